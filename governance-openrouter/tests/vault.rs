//! Vault KV v2 over HTTP: found, permission denied, no secret, sealed, missing field, namespace.

use std::sync::Arc;

use governance_core::ErrorKind;
use governance_openrouter::{
    ChainSecretSource, EnvSecretSource, SecretSource, VaultConfig, VaultSecretSource,
    resolve_dragonfly_password, resolve_openrouter_key,
};
use secrecy::{ExposeSecret, SecretString};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "hvs.VAULT-TOKEN-MUST-NEVER-LEAK";
const OR_PATH: &str = "/v1/secret/data/api-keys/openrouter";

fn kv2(data: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": {"data": data, "metadata": {"created_time": "2026-01-01T00:00:00Z", "version": 3, "destroyed": false}},
        "wrap_info": null, "warnings": null, "auth": null})
}

async fn vault_answering(p: &str, t: ResponseTemplate) -> (MockServer, VaultSecretSource) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(p))
        .and(header("x-vault-token", TOKEN))
        .respond_with(t)
        .mount(&server)
        .await;
    let source =
        VaultSecretSource::new(VaultConfig::new(server.uri(), SecretString::from(TOKEN))).unwrap();
    (server, source)
}

fn assert_no_token(e: &governance_core::Error) {
    assert!(
        !e.to_string().contains(TOKEN) && !format!("{e:?}").contains(TOKEN),
        "{e:?}"
    );
}

#[tokio::test]
async fn reads_the_field_of_a_kv2_secret() {
    let (_s, vault) = vault_answering(
        OR_PATH,
        ResponseTemplate::new(200)
            .set_body_json(kv2(&serde_json::json!({"api_key": "sk-or-v1-x"}))),
    )
    .await;
    let key = resolve_openrouter_key(&vault).await.unwrap().unwrap();
    assert_eq!(key.expose_secret(), "sk-or-v1-x");
    assert!(!format!("{vault:?}").contains(TOKEN));
}

#[tokio::test]
async fn permission_denied_points_at_the_token_policy() {
    let (_s, vault) = vault_answering(
        OR_PATH,
        ResponseTemplate::new(403)
            .set_body_json(serde_json::json!({"errors": ["permission denied"]})),
    )
    .await;
    let e = resolve_openrouter_key(&vault).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("permission denied") && msg.contains("VAULT_TOKEN policy"),
        "{msg}"
    );
    assert!(!e.is_retryable());
    assert_no_token(&e);
}

#[tokio::test]
async fn a_missing_secret_says_no_secret_at_path() {
    let (_s, vault) = vault_answering(
        OR_PATH,
        ResponseTemplate::new(404).set_body_json(serde_json::json!({"errors": []})),
    )
    .await;
    let e = resolve_openrouter_key(&vault).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("no secret at path secret/data/api-keys/openrouter"),
        "{e}"
    );
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_sealed_vault_is_retryable_and_says_so() {
    let (_s, vault) = vault_answering(
        OR_PATH,
        ResponseTemplate::new(503)
            .set_body_json(serde_json::json!({"errors": ["Vault is sealed"]})),
    )
    .await;
    let e = resolve_openrouter_key(&vault).await.unwrap_err();
    assert!(e.to_string().contains("sealed or unavailable"), "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.kind(), ErrorKind::Backend);
}

#[tokio::test]
async fn a_missing_field_is_named() {
    let (_s, vault) = vault_answering(
        "/v1/secret/data/services/dragonfly",
        ResponseTemplate::new(200).set_body_json(kv2(
            &serde_json::json!({"username": "default", "host": "df"}),
        )),
    )
    .await;
    let e = resolve_dragonfly_password(&vault).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("no field \"password\""), "{msg}");
    assert!(
        msg.contains("host, username"),
        "lists the field names present: {msg}"
    );
}

#[tokio::test]
async fn sends_the_namespace_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(OR_PATH))
        .and(header("x-vault-namespace", "admin/team-a"))
        .and(header("x-vault-token", TOKEN))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(kv2(&serde_json::json!({"api_key": "k"}))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = VaultConfig::new(server.uri(), SecretString::from(TOKEN));
    cfg.namespace = Some("admin/team-a".into());
    let vault = VaultSecretSource::new(cfg).unwrap();
    assert!(resolve_openrouter_key(&vault).await.unwrap().is_some());
}

#[tokio::test]
async fn the_chain_asks_vault_only_when_the_environment_has_nothing() {
    let (server, vault) = vault_answering(
        OR_PATH,
        ResponseTemplate::new(200)
            .set_body_json(kv2(&serde_json::json!({"api_key": "from-vault"}))),
    )
    .await;
    let vault: Arc<dyn SecretSource> = Arc::new(vault);
    let with_env = ChainSecretSource::new(vec![
        Arc::new(EnvSecretSource::from_lookup(|k| {
            (k == "OPENROUTER_API_KEY").then(|| "from-env".to_owned())
        })),
        Arc::clone(&vault),
    ]);
    let key = resolve_openrouter_key(&with_env).await.unwrap().unwrap();
    assert_eq!(key.expose_secret(), "from-env");
    assert!(server.received_requests().await.unwrap().is_empty());

    let without_env = ChainSecretSource::new(vec![
        Arc::new(EnvSecretSource::from_lookup(|_| None)),
        vault,
    ]);
    let key = resolve_openrouter_key(&without_env).await.unwrap().unwrap();
    assert_eq!(key.expose_secret(), "from-vault");
}

#[tokio::test]
async fn an_unreachable_vault_keeps_the_http_error_as_source_without_the_token() {
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vault = VaultSecretSource::new(VaultConfig::new(
        format!("http://127.0.0.1:{port}"),
        SecretString::from(TOKEN),
    ))
    .unwrap();
    let e = resolve_openrouter_key(&vault).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(e.to_string().contains("cannot reach Vault"), "{e}");
    assert!(e.is_retryable());
    let source = std::error::Error::source(&e).expect("a source");
    assert!(
        source.downcast_ref::<reqwest::Error>().is_some(),
        "{source:?}"
    );
    let mut next = Some(source);
    while let Some(s) = next {
        assert!(
            !s.to_string().contains(TOKEN) && !format!("{s:?}").contains(TOKEN),
            "{s:?}"
        );
        next = s.source();
    }
    assert_no_token(&e);
}
