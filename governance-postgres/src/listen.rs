//! A `LISTEN` connection of its own (notifications need a session that stays open, so not a
//! pooled one), reconnecting with backoff until cancelled. At most once: what is notified
//! while it reconnects is missed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::config::PgConfig;

/// Sends `(channel, payload)` of every notification on `channels` to `tx` until `cancel`.
pub(crate) async fn listen(
    config: Arc<PgConfig>,
    channels: Vec<String>,
    tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    while !cancel.is_cancelled() {
        match session(&config, &channels, &tx, &cancel).await {
            Ok(()) => delay = Duration::from_millis(100),
            Err(e) => {
                tracing::debug!(error = %e, target_db = %config.target(), "LISTEN connection failed; reconnecting");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(3));
    }
}

/// One session: connects, listens, forwards until the connection ends or `cancel`.
async fn session(
    config: &PgConfig,
    channels: &[String],
    tx: &tokio::sync::mpsc::UnboundedSender<(String, String)>,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let pg = config.driver_config().map_err(|e| e.to_string())?;
    let (client, mut conn) = pg.connect(NoTls).await.map_err(|e| e.to_string())?;
    let (note_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = stream.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = note_tx.send((n.channel().to_owned(), n.payload().to_owned()));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let sql: String = channels
        .iter()
        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "")))
        .collect();
    if let Err(e) = client.batch_execute(&sql).await {
        driver.abort();
        return Err(e.to_string());
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            n = notes.recv() => match n {
                Some(n) => { let _ = tx.send(n); }
                None => break,
            },
        }
    }
    driver.abort();
    Ok(())
}
