//! `GET /ws` (WebSocket) and `GET /api/events` (Server-Sent Events): the live feed of
//! [`crate::live`], one JSON event per message.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};

use crate::auth::origin_allowed;
use crate::error::{ApiError, ApiQuery};
use crate::live::{Feed, FeedItem, FeedQuery, FeedSpec};
use crate::state::AppState;

/// Largest message a client may send us (we only expect pings and close frames).
const MAX_CLIENT_MESSAGE: usize = 4096;

/// `GET /ws?pipeline_id=&since=`: upgrades to a WebSocket carrying the feed.
pub async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FeedQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !origin_allowed(&headers, &state.settings().allowed_origins) {
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden_origin",
            "WebSocket Origin is not this server nor an allowed origin",
        )
        .into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return ApiError::new(e.status(), "websocket_upgrade", e.body_text()).into_response();
        }
    };
    let spec = match FeedSpec::from_query(state.gov(), &q).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    // subscribe before the handshake completes so nothing emitted from now on is missed
    let feed = Feed::new(state.gov(), spec, state.shutdown_token().child_token());
    // small per-connection buffers: thousands of clients stay cheap, and a stalled client's
    // outgoing buffer is capped (sends wait for the socket before the next event is read)
    upgrade
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run_socket(socket, feed))
}

async fn run_socket(socket: WebSocket, mut feed: Feed) {
    let (mut tx, mut rx) = socket.split();
    loop {
        tokio::select! {
            item = feed.next() => {
                let Some(item) = item else {
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "server shutting down".into(),
                    }))).await;
                    break;
                };
                let fatal = matches!(item, FeedItem::Fatal(_));
                if tx.send(Message::Text(item.to_json().into())).await.is_err() {
                    break;
                }
                if fatal {
                    let _ = tx.send(Message::Close(Some(CloseFrame {
                        code: close_code::ERROR,
                        reason: "event feed failed".into(),
                    }))).await;
                    break;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {} // pings are answered by the library; other input is ignored
            },
        }
    }
}

/// `GET /api/events?pipeline_id=&since=`: the feed as Server-Sent Events (`event:` is the
/// event type, `id:` the `seq`, `data:` the JSON).
pub async fn sse(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(mut q): ApiQuery<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    // a reconnecting EventSource sends the last id it saw
    if q.since.is_none() && q.pipeline_id.is_some() {
        q.since = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
    }
    let spec = FeedSpec::from_query(state.gov(), &q).await?;
    let feed = Feed::new(state.gov(), spec, state.shutdown_token().child_token());
    let stream = feed.into_stream().map(|item| {
        let mut ev = SseEvent::default().event(item.name()).data(item.to_json());
        if let FeedItem::Event(e) = &item {
            ev = ev.id(e.seq.to_string());
        }
        Ok::<_, Infallible>(ev)
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
