//! Consumer-group commands on a stream, for the bus's [`GroupConsumer`](crate::GroupConsumer)
//! and the workers' work streams: a group that exists (`BUSYGROUP`) or is missing (`NOGROUP`)
//! is told by the error's code ([`classify`]).

use governance_core::Result;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, RedisResult};

use super::error::{Class, Effect, classify};
use super::shared::Shared;

impl Shared {
    /// Creates the consumer group `group` of the stream `log` at `0` (`MKSTREAM`), unless it
    /// exists. Idempotent; rides out an outage like every command.
    pub(crate) async fn ensure_group(
        &self,
        op: &'static str,
        log: &str,
        group: &str,
    ) -> Result<()> {
        self.execute(op, Effect::Idempotent, |mut conn| async move {
            create_group(&mut conn, log, group).await
        })
        .await
        .map(|((), _)| ())
    }

    /// Runs `cmd`, a command on the group `group` of `log`; when the group is missing
    /// (`NOGROUP`: the stream was deleted, or the server lost its data), creates it at `0` and
    /// runs `cmd` again. The flag is `true` when the reply is a repeat's (see
    /// [`Shared::execute`]).
    pub(crate) async fn query_on_group<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
        log: &str,
        group: &str,
    ) -> Result<(T, bool)> {
        self.execute(op, Effect::Idempotent, |mut conn| async move {
            match cmd.query_async(&mut conn).await {
                Err(e) if classify(&e) == Class::NoGroup => {
                    tracing::debug!(log, group, "consumer group missing; creating it at 0");
                    create_group(&mut conn, log, group).await?;
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }
}

/// `XGROUP CREATE <log> <group> 0 MKSTREAM`; an existing group (`BUSYGROUP`) is fine.
async fn create_group(conn: &mut ConnectionManager, log: &str, group: &str) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(log)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if classify(&e) == Class::GroupExists => Ok(()),
        other => other,
    }
}
