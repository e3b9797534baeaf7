//! Helpers of the integration tests: every test works in a schema of its own (random name,
//! created by the store's migrations, dropped when the guard goes), so tests run in parallel
//! against the real server and leave nothing behind.
#![allow(dead_code)]

use governance_postgres::{PgConfig, PgStore};

/// The server the tests use (`GOVERNANCE_TEST_DATABASE_URL`, default the local one).
pub fn server_url() -> String {
    std::env::var("GOVERNANCE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A schema of one test; dropped (with everything in it) on drop.
pub struct TestSchema {
    pub name: String,
    pub url: String,
}

impl TestSchema {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            name: format!("gov_test_{}", &id[..16]),
            url: server_url(),
        }
    }

    pub fn config(&self) -> PgConfig {
        PgConfig::new(&self.url).with_schema(&self.name)
    }

    pub async fn store(&self) -> PgStore {
        PgStore::connect(self.config())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// Runs `sql` on a connection of its own (outside the schema's store).
    pub async fn exec(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path = {}; {sql}", self.name))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = task.await;
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // a runtime of its own: the test's may be gone or busy
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                let task = tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await?;
                drop(client);
                let _ = task.await;
                Ok::<(), tokio_postgres::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}
