//! Mapping of redis errors to [`governance_core::Error::Backend`], and their classification
//! ([`classify`]) by the error's kind and the server's error code, never by its text.
//!
//! `retryable: true` is reported only when the operation was **certainly not applied**
//! (the trait contract) — or when it has no effect at all (reads). See the crate docs for
//! which writes are idempotent and therefore safe to repeat after an *unknown* outcome.

use governance_core::{Cause, Error};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Name used in every [`Error::Backend`] of this crate.
pub const BACKEND: &str = "redis";

/// What an operation does to the data, which decides how an ambiguous failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Changes nothing: any failure may be retried.
    Read,
    /// Repeating it after it was applied changes nothing more (same id, same voter, same claim,
    /// last-write-wins, delete, replace).
    Idempotent,
    /// Appends (a solution, a bus message): repeating it after it was applied appends again.
    Append,
}

/// Whether the command certainly never reached the server, or the server refused it before
/// running it.
pub(crate) fn certainly_not_applied(e: &RedisError) -> bool {
    if e.is_connection_refusal() {
        return true;
    }
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::CrossSlot
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        )
    )
}

/// Whether the connection (not the command) failed: the outcome of a write is unknown.
pub(crate) fn outcome_unknown(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped()
}

/// What a failed command tells the caller, read from the error's kind and the server's error
/// code (the first word of a `-CODE detail` reply), never from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The command certainly did not run ([`certainly_not_applied`]): the connection was
    /// refused, or the server refused it before running it (`LOADING`, `TRYAGAIN`,
    /// `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `CROSSSLOT`, `MOVED`, `ASK`).
    NotApplied,
    /// The connection failed after the command may have been sent ([`outcome_unknown`]).
    ConnectionLost,
    /// `XGROUP CREATE` of a consumer group that exists (`BUSYGROUP`).
    GroupExists,
    /// The consumer group, or its stream, does not exist (`NOGROUP`).
    NoGroup,
    /// Anything else: refused by the server, or a reply the client could not decode.
    Refused,
}

/// The [`Class`] of `e`.
pub(crate) fn classify(e: &RedisError) -> Class {
    if certainly_not_applied(e) {
        return Class::NotApplied;
    }
    if outcome_unknown(e) {
        return Class::ConnectionLost;
    }
    match e.code() {
        Some("BUSYGROUP") => Class::GroupExists,
        Some("NOGROUP") => Class::NoGroup,
        _ => Class::Refused,
    }
}

/// Maps a redis error of operation `op` to a backend error, keeping `secret` (the password)
/// out of the message.
pub(crate) fn map_redis_error(
    e: &RedisError,
    op: &'static str,
    effect: Effect,
    secret: Option<&str>,
) -> Error {
    let detail = sanitize(&e.to_string(), secret);
    let not_applied = certainly_not_applied(e);
    let (retryable, note) = if not_applied {
        (true, "not applied; safe to retry")
    } else if outcome_unknown(e) {
        match effect {
            Effect::Read => (true, "read failed; safe to retry"),
            Effect::Idempotent => (
                false,
                "outcome unknown (the connection failed after the command may have been sent); \
                 this operation is idempotent, repeating it is safe",
            ),
            Effect::Append => (
                false,
                "outcome unknown (the connection failed after the command may have been sent); \
                 this operation appends, check before repeating it",
            ),
        }
    } else {
        (false, "refused by the server")
    };
    Error::backend(BACKEND, format!("{op}: {detail} ({note})"), retryable)
        .with_cause(cause(e, secret))
}

/// `e` as the [`Cause`] of a backend error: the redis error itself, or, when its text or that
/// of one of its sources contains `secret`, that text with the secret replaced (a
/// [`Redacted`] error), so no secret is reachable through the error's source chain.
pub(crate) fn cause(e: &RedisError, secret: Option<&str>) -> Cause {
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = next {
            if err.to_string().contains(s) {
                return Cause::new(Redacted(sanitize(&e.to_string(), secret)));
            }
            next = err.source();
        }
    }
    Cause::new(e.clone())
}

/// The text of an error that contained a secret, with the secret replaced by `***`.
#[derive(Debug)]
pub(crate) struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// The error of a write that may have been applied (its reply was lost and the server could
/// not be asked again in time), whatever the last attempt's error was.
pub(crate) fn unknown_outcome(
    e: &RedisError,
    op: &'static str,
    effect: Effect,
    secret: Option<&str>,
) -> Error {
    let detail = sanitize(&e.to_string(), secret);
    let note = if effect == Effect::Append {
        "this operation appends, check before repeating it"
    } else {
        "this operation is idempotent, repeating it is safe"
    };
    Error::backend(
        BACKEND,
        format!(
            "{op}: {detail} (outcome unknown: an earlier attempt may have been applied and the \
             server stayed unreachable; {note})"
        ),
        false,
    )
    .with_cause(cause(e, secret))
}

/// Removes `secret` from `text` (belt and braces: redis error texts do not contain the
/// password, but a server's error message is not ours to trust).
pub(crate) fn sanitize(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

/// A payload stored in Redis could not be decoded (written by another client or corrupted).
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::backend(
        BACKEND,
        format!("stored {what} is not valid wire-protocol JSON: {detail}"),
        false,
    )
}

/// [`corrupt`] for a JSON error, kept as the error's source.
pub(crate) fn corrupt_json(what: &str, e: serde_json::Error) -> Error {
    corrupt(what, &e).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_refused_is_retryable_even_for_appends() {
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let mapped = map_redis_error(&e, "publish", Effect::Append, None);
        assert!(mapped.is_retryable(), "{mapped}");
    }

    #[test]
    fn broken_pipe_is_unknown_for_writes_and_retryable_for_reads() {
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(!map_redis_error(&e, "vote", Effect::Idempotent, None).is_retryable());
        assert!(!map_redis_error(&e, "publish", Effect::Append, None).is_retryable());
        assert!(map_redis_error(&e, "read", Effect::Read, None).is_retryable());
    }

    /// The error a server's `-CODE detail` reply turns into.
    fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .and_then(redis::Value::extract_error)
            .expect_err("an error reply")
    }

    #[test]
    fn refused_connections_and_busy_servers_are_not_applied() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), Class::NotApplied);
        for reply in [
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down",
        ] {
            assert_eq!(classify(&server_error(reply)), Class::NotApplied, "{reply}");
        }
    }

    #[test]
    fn lost_connections_leave_the_outcome_unknown() {
        for kind in [
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let e = RedisError::from(std::io::Error::from(kind));
            assert_eq!(classify(&e), Class::ConnectionLost, "{kind:?}");
        }
    }

    #[test]
    fn busygroup_is_an_existing_group() {
        let e = server_error("BUSYGROUP Consumer Group name already exists");
        assert_eq!(classify(&e), Class::GroupExists);
    }

    #[test]
    fn nogroup_is_a_missing_group() {
        let e = server_error(
            "NOGROUP No such key 'gov:{p}:bus:log' or consumer group 'g' in XREADGROUP with GROUP option",
        );
        assert_eq!(classify(&e), Class::NoGroup);
    }

    #[test]
    fn other_server_errors_are_refusals_whatever_their_text_says() {
        for reply in [
            "ERR wrong number of arguments for 'xgroup|create' command",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            // the code decides, not the words: these mention a class's code in their text
            "ERR BUSYGROUP Consumer Group name already exists",
            "ERR NOGROUP no such group",
            "ERR LOADING is not the code here",
        ] {
            assert_eq!(classify(&server_error(reply)), Class::Refused, "{reply}");
        }
        let decode = RedisError::from(
            redis::from_redis_value::<i64>(redis::Value::Nil).expect_err("nil is no i64"),
        );
        assert_eq!(classify(&decode), Class::Refused);
    }

    #[test]
    fn the_redis_error_is_the_source_unless_it_holds_the_secret() {
        use std::error::Error as _;
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let mapped = map_redis_error(&e, "vote", Effect::Idempotent, Some("hunter2"));
        let source = mapped.source().expect("a source");
        let redis = source
            .downcast_ref::<RedisError>()
            .expect("the redis error");
        assert!(redis.is_connection_refusal());
        // a server error whose text holds the password: the source is its redacted text
        let leaky = server_error("ERR invalid password hunter2 for user default");
        for mapped in [
            map_redis_error(&leaky, "auth", Effect::Read, Some("hunter2")),
            unknown_outcome(&leaky, "auth", Effect::Idempotent, Some("hunter2")),
        ] {
            let mut chain = vec![mapped.to_string()];
            let mut next = mapped.source();
            while let Some(s) = next {
                chain.push(s.to_string());
                chain.push(format!("{s:?}"));
                next = s.source();
            }
            assert!(chain.len() > 1, "{chain:?}");
            assert!(chain.iter().all(|t| !t.contains("hunter2")), "{chain:?}");
            assert!(chain[1].contains("***"), "{chain:?}");
        }
    }

    #[test]
    fn messages_never_contain_the_secret() {
        assert_eq!(
            sanitize("auth hunter2 failed", Some("hunter2")),
            "auth *** failed"
        );
    }
}
