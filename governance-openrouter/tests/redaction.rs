//! The API key and the Vault token never reach a log line: every event at every level of every
//! crate is captured while the client succeeds, fails, streams and reads Vault.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{KEY, PATH, client, completion, request};
use governance_core::LlmClient;
use governance_openrouter::{VaultConfig, VaultSecretSource, resolve_openrouter_key};
use secrecy::SecretString;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "hvs.VAULT-TOKEN-MUST-NEVER-LEAK";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_key_never_appears_in_any_log_line() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("fine")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            serde_json::json!({"error": {"code": 401, "message": "No auth credentials found"}}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n",
            "text/event-stream",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(serde_json::json!({"errors": ["permission denied"]})),
        )
        .mount(&server)
        .await;

    let c = client(&server);
    c.complete(&request()).await.unwrap();
    let unauthorized = c.complete(&request()).await.unwrap_err();
    c.complete_streaming(&request(), &|_| {}).await.unwrap();
    let vault =
        VaultSecretSource::new(VaultConfig::new(server.uri(), SecretString::from(TOKEN))).unwrap();
    let denied = resolve_openrouter_key(&vault).await.unwrap_err();
    tracing::error!(error = %unauthorized, debug = ?unauthorized, vault = ?denied, client = ?c, "as an app would log them");

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("openrouter call succeeded"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("openrouter call failed"), "{logs}");
    assert!(!logs.contains(KEY), "API key in the logs:\n{logs}");
    assert!(!logs.contains(TOKEN), "Vault token in the logs:\n{logs}");
    assert!(!logs.contains(&KEY[10..30]), "part of the key in the logs");
}
