//! [`PgConfig`]: where the database is, which schema holds the tables, pool size and how long
//! a lost connection is ridden out. The URL's password never leaves this module unredacted.

use std::str::FromStr as _;
use std::time::Duration;

use governance_core::{Error, Result};

/// The variable named in configuration errors.
const VAR: &str = "DATABASE_URL";

/// How a [`PgStore`](crate::PgStore) reaches PostgreSQL.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    url: String,
    /// The schema holding every table (created when missing). `None`: the connection's
    /// `search_path` (normally `public`).
    pub schema: Option<String>,
    /// Most pooled connections (default 16).
    pub pool_size: usize,
    /// How long opening one connection may take (default 3 s).
    pub connect_timeout: Duration,
    /// How long an operation rides out a lost connection (a restarting server) before it
    /// returns its (retryable) error (default 10 s).
    pub outage_timeout: Duration,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.redacted_url())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("outage_timeout", &self.outage_timeout)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    /// A configuration for `url` (`postgres://user:password@host:port/db?...` or libpq's
    /// `key=value` form) with the defaults.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
            outage_timeout: Duration::from_secs(10),
        }
    }

    /// The same with the tables in `schema`.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The URL with its password replaced by `***` (for logs and errors).
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The parsed driver configuration (with the schema as `search_path`).
    pub(crate) fn driver_config(&self) -> Result<tokio_postgres::Config> {
        let mut c = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            let why = scrub(&e.to_string(), &self.url);
            Error::config(
                VAR,
                format!("{} is not a PostgreSQL URL: {why}", self.redacted_url()),
            )
        })?;
        if let Some(schema) = &self.schema {
            check_schema(schema)?;
            let options = match c.get_options() {
                Some(o) if !o.trim().is_empty() => format!("{o} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            c.options(options);
        }
        if c.get_application_name().is_none() {
            c.application_name("governance");
        }
        c.connect_timeout(self.connect_timeout);
        c.keepalives(true);
        c.keepalives_idle(Duration::from_secs(30));
        Ok(c)
    }

    /// `host:port/db` with the schema, for error messages.
    pub(crate) fn target(&self) -> String {
        let url = self.redacted_url();
        match &self.schema {
            Some(s) => format!("{url} (schema {s})"),
            None => url,
        }
    }
}

/// Checks that `schema` is a plain lower-case identifier (`[a-z_][a-z0-9_]{0,47}`), so it
/// needs no quoting in SQL, options or channel names.
///
/// # Errors
/// [`Error::Config`] naming `GOVERNANCE_PG_SCHEMA`.
pub fn check_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "GOVERNANCE_PG_SCHEMA",
            format!("{schema:?} is not a schema name of [a-z_][a-z0-9_]{{0,47}}"),
        ))
    }
}

/// `url` with the password of its user info (`scheme://user:PASSWORD@host`) and any
/// `password=` parameter replaced by `***`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let mut out = match (url.find("://"), password_span(url)) {
        (Some(_), Some((start, end))) => format!("{}***{}", &url[..start], &url[end..]),
        _ => url.to_owned(),
    };
    // key=value form or a query parameter
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let start = from + i + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |n| start + n);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// Where the password of `scheme://user:password@host` is (byte range), if there is one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let after = url.find("://")? + 3;
    let rest = &url[after..];
    let at = rest.rfind('@')?;
    let userinfo = &rest[..at];
    let colon = userinfo.find(':')?;
    Some((after + colon + 1, after + at))
}

/// `text` with the password of `url`, if it appears, replaced by `***`.
fn scrub(text: &str, url: &str) -> String {
    match password_span(url) {
        Some((s, e)) if e > s => text.replace(&url[s..e], "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://gov:s3cret@db:5432/app"),
            "postgres://gov:***@db:5432/app"
        );
        assert_eq!(
            redact_url("host=db user=gov password=s3cret dbname=app"),
            "host=db user=gov password=*** dbname=app"
        );
        assert_eq!(
            redact_url("postgres://db/app?user=gov&password=s3cret&sslmode=disable"),
            "postgres://db/app?user=gov&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
        let c = PgConfig::new("postgres://gov:s3cret@db:notaport/app");
        let e = c.driver_config().unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema("gov_test_1").is_ok());
        for bad in ["", "Gov", "1x", "a-b", "a;drop", &"x".repeat(49)] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }
}
