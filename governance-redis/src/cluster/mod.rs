//! Several server nodes on one Redis: pipeline ownership leases with fencing tokens
//! ([`RedisLeases`]), taking over the pipelines of a dead node ([`RedisLeases::run`]), and
//! relaying every node's events to the others' live feeds.
//!
//! # The protocol (keys in `docs/wire-protocol.md`)
//! - **Claim**: a node that spawns a pipeline runs `lease_acquire` on `gov:{P}:owner` /
//!   `gov:{P}:fence`: the fence counter is incremented and the lease `<node>:<token>` is set
//!   with a TTL (`lease`, default 5 s). The token is the pipeline's *fencing token*.
//! - **Renew**: every `lease / 3` the node renews all its leases (`lease_renew`). A node that is
//!   paused (GC, SIGSTOP, a partition) for longer than `lease` loses them.
//! - **Fence**: every write of a pipeline's ledger, checkpoint or record is the `append_state`
//!   script, which compares `gov:{P}:fence` with the writer's token and refuses the write when
//!   they differ. A node that wakes up after another node took its pipeline over therefore
//!   cannot write: it gets [`Error::Fenced`](governance_core::Error::Fenced) and drops the pipeline.
//! - **Take over**: every `lease / 2` each node reads `gov:active` (pipelines not terminal) and
//!   tries `lease_acquire` on those whose lease key is gone; at most one node wins (new token),
//!   and it resumes the pipeline from its last checkpoint, the shared ledger and the blackboard
//!   in Redis ([`Governance::adopt`](governance_core::Governance::adopt)).
//! - **Events**: `append_state` also `PUBLISH`es the appended events on `gov:events`; every
//!   node relays other nodes' events into its own live feed. This relay is at-most-once (pub/sub):
//!   a WebSocket client that reconnects with `since=<seq>` gets what it missed from the shared
//!   ledger.
//!
//! - **Commands**: `stop` and `continue` sent to a node that does not run the pipeline are
//!   stored in `gov:{P}:command` (JSON [`Command`](governance_core::Command)) and announced on `gov:commands`; the owner
//!   takes the key (`GETDEL`) when woken, or at its next renewal, and carries the command out.
//!   The asking node waits (at most a minute) until the registry shows the result.
//!
//! Blackboard writes are not fenced: they are idempotent (proposal ids, one vote per voter,
//! consensus decided once by a script), so an old owner's late agent write cannot create a
//! second consensus or count a vote twice.

mod archive;
mod leases;
mod relay;

pub use archive::{Archiver, archive_pipeline};
pub use leases::RedisLeases;
pub use relay::decode_relayed;
pub(crate) use relay::on_messages;
