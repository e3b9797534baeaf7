//! Connection settings for the Redis / DragonflyDB backend.

use std::fmt;
use std::time::Duration;

/// Settings for [`crate::RedisBackend::connect`].
///
/// The password may come from the URL (`redis://:secret@host:6379`) or from
/// [`password`](Self::password), which wins when both are set (a Vault / secret-store password
/// is passed with [`with_password`](Self::with_password); see the crate docs). Neither the password nor the
/// unredacted URL ever appears in `Debug` output, errors or logs: see [`redact_url`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (TLS).
    pub url: String,
    /// Password; overrides one given in the URL. Redacted in `Debug`.
    pub password: Option<String>,
    /// First segment of every key and channel (default `gov`): keys look like
    /// `<key_prefix>:{<pipeline_id>}:proposals`. Must not contain `{`, `}` or whitespace.
    pub key_prefix: String,
    /// When set, each pipeline's message log is trimmed to about this many entries
    /// (`XADD … MAXLEN ~ n`). Trimmed messages can no longer be replayed by
    /// [`MessageBus::read`](governance_core::MessageBus::read); leave it `None` (the default)
    /// for a lossless log and delete logs with `clear` once a pipeline is checkpointed.
    pub stream_maxlen: Option<u64>,
    /// How long to wait for one connection attempt (default 1 s).
    pub connection_timeout: Duration,
    /// How long to wait for a command's reply (default 5 s). A reply that does not come in
    /// time leaves the outcome of a write *unknown* (see the crate docs on retries).
    pub response_timeout: Duration,
    /// How long an operation rides out a lost connection (a restarting server) before it
    /// fails (default 10 s). Reads and idempotent writes are repeated; appends (`publish`,
    /// `add_solution`) first check whether an earlier attempt was applied. When it passes, the
    /// error is retryable if nothing can have been applied, else the non-retryable "outcome
    /// unknown".
    pub outage_timeout: Duration,
    /// How long a health check (`ping`) waits for its reply (default 500 ms). A ping is tried
    /// once and never rides out an outage: a readiness probe must report one, not wait it out.
    pub probe_timeout: Duration,
    /// Connection attempts the shared connection makes after it is lost, before the waiting
    /// commands fail with a retryable error (default 2; the next command tries again).
    pub reconnect_attempts: usize,
    /// Smallest delay between reconnection attempts (default 50 ms; doubles per attempt).
    pub reconnect_min_delay: Duration,
    /// Largest delay between reconnection attempts of the pub/sub connection (default 2 s).
    pub reconnect_max_delay: Duration,
    /// Capacity of each live subscriber's queue (default 1024). A subscriber that falls further
    /// behind misses messages (live delivery is at-most-once) and should fill the gap with
    /// `read`.
    pub subscriber_buffer: usize,
}

impl RedisConfig {
    /// Default settings for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            key_prefix: "gov".to_owned(),
            stream_maxlen: None,
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
            outage_timeout: Duration::from_secs(10),
            probe_timeout: Duration::from_millis(500),
            reconnect_attempts: 2,
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
            subscriber_buffer: 1024,
        }
    }

    /// Sets the password (overrides one in the URL).
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the approximate maximum length of each message log.
    #[must_use]
    pub fn with_stream_maxlen(mut self, maxlen: u64) -> Self {
        self.stream_maxlen = Some(maxlen);
        self
    }

    /// The URL with any password replaced by `***` (safe for logs and errors).
    #[must_use]
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("key_prefix", &self.key_prefix)
            .field("stream_maxlen", &self.stream_maxlen)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("outage_timeout", &self.outage_timeout)
            .field("probe_timeout", &self.probe_timeout)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("reconnect_min_delay", &self.reconnect_min_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("subscriber_buffer", &self.subscriber_buffer)
            .finish()
    }
}

/// `url` with the password part of its userinfo (`user:password@`) replaced by `***`.
///
/// Works on anything URL-shaped, even when it does not parse, so it is safe to call on bad
/// input before reporting it.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not URL-shaped: show nothing of it (it could be a bare secret).
        return "<unparseable url>".to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        None => url.to_owned(),
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***@{}", &url[..rest_start], user, &rest[at + 1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:p@ss@host"),
            "rediss://user:***@host"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("s3cret"), "<unparseable url>");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = RedisConfig::new("redis://:urlpass@h:1").with_password("cfgpass");
        let d = format!("{c:?}");
        assert!(!d.contains("urlpass") && !d.contains("cfgpass"), "{d}");
    }
}
