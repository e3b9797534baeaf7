#!/usr/bin/env python3
"""CRITIC: a governance agent in Python, built from docs/wire-protocol.md alone.

It plays a custom role (default ``CRITIC``) in pipelines run by a Rust server started with
``GOVERNANCE_REMOTE_ROLES=CRITIC`` on the same Redis:

1. joins the consumer group ``workers`` of the work stream ``gov:work:<ROLE>`` and claims a
   work item (field ``w``, JSON);
2. holds the work with a heartbeat (``SET gov:{P}:worker:<ROLE> <name> PX <lease>`` and
   ``XCLAIM ... JUSTID``) every lease / 3, and watches the bus for control messages from
   ``ORCHESTRATOR`` (topic ``control``: ``{"type":"cancel"}``, ``{"type":"quorum",...}``);
3. waits until the pipeline's blackboard holds at least one proposal, then broadcasts a
   critique on the bus (topic ``critique``) and reports the matching ``agent_message`` event
   to ``ORCHESTRATOR`` (topic ``control``, ``{"type":"event","event":{...}}``), which records
   it in the pipeline's ledger;
4. ends with the report ``{"type":"done","outcome":"done"}`` (or ``"idle"`` when cancelled or
   when no proposal came in time), then ``XACK`` + ``XDEL`` of the entry and ``DEL`` of the
   heartbeat.

It speaks wire protocol version 2 (the work item's ``v``); work items of another version are
left pending for a worker that speaks it.

Needs only redis-py (``pip install redis``) and Python 3.11+. Exit codes: 0 = ok, 1 = error
(Redis unreachable, refused command, ...), 2 = bad arguments, 3 = ``--once`` got no work item
within ``--timeout``. Logs go to stderr; stdout gets one ``ready ...`` line once the agent
listens for work, and one ``finished ...`` line per work item.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

try:
    import redis
except ImportError:  # pragma: no cover - depends on the environment
    sys.stderr.write("critic_agent: redis-py is missing: pip install redis\n")
    sys.exit(1)

# The `publish` script, copied verbatim from `governance_redis::scripts::PUBLISH`
# (governance-redis/src/scripts.rs; described in docs/wire-protocol.md, "Message bus").
# KEYS: gov:{P}:bus:seq, gov:{P}:bus:log. ARGV: message JSON without seq, maxlen or "",
# live channel. Returns the seq it assigned. Do not edit: the Rust test checks it is identical.
PUBLISH_LUA = r"""
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
local s = string.format('%d', seq)
local msg = '{"seq":' .. s .. ',' .. string.sub(ARGV[1], 2)
if ARGV[2] == '' then
  redis.call('XADD', KEYS[2], s .. '-0', 'm', msg)
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], s .. '-0', 'm', msg)
end
redis.call('SET', KEYS[1], s)
redis.call('PUBLISH', ARGV[3], msg)
return seq
"""

WIRE_VERSION = 1  # stored payloads and bus messages
PROTOCOL_VERSION = 2  # work items; control messages and reports are tagged JSON on CONTROL
WORKER_GROUP = "workers"
ORCHESTRATOR = "ORCHESTRATOR"
CONTROL = "control"
BROADCAST = "*"
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROLE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
POLL_SECS = 0.1
# connection trouble (BusyLoadingError, i.e. LOADING, is a ConnectionError): retried for
# idempotent commands (docs/wire-protocol.md, "Failures and retries")
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
RETRIES = 5


class AgentError(Exception):
    """A failure worth one clear line on stderr (never contains a secret)."""


def log(msg: str) -> None:
    sys.stderr.write(f"critic_agent: {msg}\n")
    sys.stderr.flush()


def say(msg: str) -> None:
    """One line on stdout; a reader that went away does not stop the agent."""
    try:
        print(msg, flush=True)
    except (BrokenPipeError, ValueError):
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass


def check_id(what: str, value: Any, pattern: re.Pattern[str] = ID_RE) -> str:
    """An id that is safe to put in a key (no ':', '{', '}' ...), or AgentError."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value)[:80]
        raise AgentError(f"invalid {what} {shown}: expected {pattern.pattern}")
    return value


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        u = urllib.parse.urlsplit(url)
        host = u.hostname or ""
        port = f":{u.port}" if u.port else ""
        user = f"{u.username}:***@" if u.password else ""
        return f"{u.scheme}://{user}{host}{port}{u.path}"
    except ValueError:
        return "<unparseable URL>"


def default_name() -> str:
    raw = f"py-{socket.gethostname()}-{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", raw)[:64]


def retry(what: str, fn, *args, **kwargs):
    """Runs an idempotent command, retrying transient failures with a short backoff."""
    delay = 0.1
    for attempt in range(1, RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except TRANSIENT as e:
            if attempt == RETRIES:
                raise AgentError(f"{what}: Redis unavailable ({type(e).__name__}: {e})") from e
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AgentError(f"{what}: Redis unavailable")


class Pipeline:
    """The keys of one pipeline (docs/wire-protocol.md, "Conventions")."""

    def __init__(self, prefix: str, pipeline_id: str):
        self.id = check_id("pipeline id", pipeline_id)
        self.base = f"{prefix}:{{{self.id}}}"

    def key(self, name: str) -> str:
        return f"{self.base}:{name}"


class Cancelled(Exception):
    """ORCHESTRATOR told this role to stop."""


class Critic:
    def __init__(self, r: redis.Redis, args: argparse.Namespace):
        self.r = r
        self.role: str = args.role
        self.name: str = args.name
        self.prefix: str = args.prefix
        self.lease_ms: int = args.lease_ms
        self.timeout: float = args.timeout
        self.maxlen: str = str(args.stream_maxlen) if args.stream_maxlen else ""
        self.stream = f"{self.prefix}:work:{self.role}"
        self.publish_script = r.register_script(PUBLISH_LUA)
        self.skipped: set[str] = set()  # entries left pending for a newer worker

    # --- work stream ---------------------------------------------------------------------

    def join(self) -> None:
        try:
            retry("joining the work group", self.r.xgroup_create, self.stream, WORKER_GROUP,
                  id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise AgentError(f"cannot create group {WORKER_GROUP} on {self.stream}: {e}") from e

    def claim(self, block_ms: int) -> tuple[str, dict[str, str]] | None:
        """One entry for this worker: its own pending entries first (a restart under the same
        name, or a lost reply), then entries of dead workers (idle longer than the lease), then
        new ones. Entries left pending on purpose (`self.skipped`) are passed over."""
        for attempt in range(2):
            try:
                own = retry("reading pending work", self.r.xreadgroup, WORKER_GROUP, self.name,
                            {self.stream: "0"}, count=16)
                entry = self.pick(entries_of(own))
                if entry is not None:
                    return entry
                reply = retry("reclaiming work", self.r.xautoclaim, self.stream, WORKER_GROUP,
                              self.name, self.lease_ms, start_id="0-0", count=16)
                entry = self.pick(reply[1] if reply and len(reply) > 1 else [])
                if entry is not None:
                    return entry
                new = self.r.xreadgroup(WORKER_GROUP, self.name, {self.stream: ">"}, count=1,
                                        block=block_ms)
                return self.pick(entries_of(new))
            except TRANSIENT:
                # the "0" read above finds an entry whose delivery reply was lost
                time.sleep(0.2)
                return None
            except redis.exceptions.ResponseError as e:
                if "NOGROUP" in str(e) and attempt == 0:
                    self.join()
                    continue
                raise AgentError(f"cannot read {self.stream}: {e}") from e
        return None

    def pick(self, entries: list[Any]) -> tuple[str, dict[str, str]] | None:
        for entry_id, fields in entries:
            if entry_id is not None and entry_id not in self.skipped:
                return entry_id, fields or {}
        return None

    def finish_entry(self, entry_id: str) -> None:
        retry("acknowledging work", self.r.xack, self.stream, WORKER_GROUP, entry_id)
        retry("deleting work", self.r.xdel, self.stream, entry_id)

    # --- bus ------------------------------------------------------------------------------

    def publish(self, p: Pipeline, to: str, topic: str, content: str) -> int:
        """Publishes a message with the `publish` script. After an unknown outcome it looks for
        the identical message in the log before sending it again (publishing appends)."""
        msg = compact({"v": WIRE_VERSION, "from": self.role, "to": to, "topic": topic,
                       "content": content, "ts": now_rfc3339()})
        keys = [p.key("bus:seq"), p.key("bus:log")]
        argv = [msg, self.maxlen, p.key("bus:live")]
        delay = 0.1
        for attempt in range(1, RETRIES + 1):
            try:
                return int(self.publish_script(keys=keys, args=argv))
            except TRANSIENT as e:
                if attempt == RETRIES:
                    raise AgentError(f"publishing {topic}: Redis unavailable ({type(e).__name__})") from e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                seq = self.find_published(p, msg)
                if seq is not None:
                    return seq
            except redis.exceptions.ResponseError as e:
                raise AgentError(f"publishing {topic} refused: {e}") from e
        raise AgentError(f"publishing {topic} failed")

    def find_published(self, p: Pipeline, msg: str) -> int | None:
        try:
            entries = retry("checking the bus log", self.r.xrevrange, p.key("bus:log"), "+", "-",
                            count=1000)
        except AgentError:
            return None
        tail = "," + msg[1:]
        for entry_id, fields in entries:
            m = (fields or {}).get("m", "")
            if m.startswith('{"seq":') and m.endswith(tail):
                return int(entry_id.split("-")[0])
        return None

    def tell_owner(self, p: Pipeline, report: dict[str, Any]) -> int:
        """Sends a report (``{"type": "event" | "done", ...}``) to the pipeline's owner."""
        return self.publish(p, ORCHESTRATOR, CONTROL, compact(report))

    def report(self, p: Pipeline, event_type: str, data: dict[str, Any]) -> None:
        """Reports a ledger event to the pipeline's owner."""
        self.tell_owner(p, {"type": "event", "event": {"type": event_type, "data": data}})

    # --- playing one work item --------------------------------------------------------------

    def play(self, entry_id: str, fields: dict[str, str]) -> str | None:
        """Plays one work item to its end; returns the outcome, or None when the entry is left
        pending (a payload version this agent does not know)."""
        raw = fields.get("w")
        if raw is None:
            log(f"work entry {entry_id} has no payload (trimmed?): dropping it")
            self.finish_entry(entry_id)
            return "dropped"
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
            if item.get("v") != PROTOCOL_VERSION:
                log(f"work entry {entry_id} has protocol version {item.get('v')!r}: "
                    "leaving it to a newer worker")
                self.skipped.add(entry_id)
                return None
            p = Pipeline(self.prefix, item.get("pipeline_id"))
            if check_id("role", item.get("role"), ROLE_RE) != self.role:
                raise ValueError(f"work for role {item.get('role')!r} on the {self.role} stream")
        except (ValueError, AgentError) as e:
            log(f"dropping malformed work entry {entry_id}: {e}")
            self.finish_entry(entry_id)
            return "dropped"

        session = Session(self, p, entry_id, item)
        outcome, message = session.run()
        done: dict[str, Any] = {"type": "done", "outcome": outcome}
        if message:
            done["message"] = message
        self.tell_owner(p, done)
        retry("deleting the heartbeat", self.r.delete, session.heartbeat)
        self.finish_entry(entry_id)
        say(f"finished {p.id} {self.role}: {outcome}" + (f" ({message})" if message else ""))
        return outcome


def entries_of(reply: Any) -> list[Any]:
    """The (id, fields) pairs of an XREADGROUP reply on one stream."""
    out: list[Any] = []
    for _, entries in reply or []:
        out.extend(entries or [])
    return out


class Session:
    """One work item being played: heartbeat, control messages, the critique."""

    def __init__(self, critic: Critic, p: Pipeline, entry_id: str, item: dict[str, Any]):
        self.c = critic
        self.p = p
        self.entry_id = entry_id
        self.item = item
        self.heartbeat = p.key(f"worker:{critic.role}")
        # last bus seq examined: control messages before the work was queued are not for us
        self.after = int(item.get("after", 0) or 0)
        self.next_beat = 0.0
        self.quorum = item.get("quorum")
        self.cancelled = False
        self.previous_critique: str | None = None  # our own, from a worker that died
        self.previous_report = False

    def beat(self) -> None:
        """Heartbeat + idle-time reset, then the control messages since the last look."""
        c = self.c
        pipe = c.r.pipeline(transaction=False)
        pipe.set(self.heartbeat, c.name, px=c.lease_ms)
        pipe.xclaim(c.stream, WORKER_GROUP, c.name, 0, [self.entry_id], justid=True)
        # the owner no longer follows this role (the pipeline went on without this work)
        pipe.exists(self.p.key(f"ended:{c.role}"))
        replies = retry("refreshing the heartbeat", pipe.execute)
        if replies[-1]:
            self.cancelled = True
        self.read_bus()
        self.next_beat = time.monotonic() + c.lease_ms / 3000.0

    def read_bus(self) -> None:
        while True:
            entries = retry("reading the bus", self.c.r.xrange, self.p.key("bus:log"),
                            f"{self.after + 1}-0", "+", count=256)
            if not entries:
                return
            for entry_id, fields in entries:
                self.after = int(entry_id.split("-")[0])
                m = decode_message((fields or {}).get("m"))
                if m is None:
                    continue
                role = self.c.role
                if m.get("from") == ORCHESTRATOR and m.get("to") == role and m.get("topic") == CONTROL:
                    control = decode_json(m.get("content")) or {}
                    if control.get("type") == "cancel":
                        self.cancelled = True
                    elif control.get("type") == "quorum" and isinstance(control.get("quorum"), int):
                        self.quorum = control["quorum"]
                elif m.get("from") == role and m.get("topic") == "critique":
                    self.previous_critique = m.get("content")
                elif m.get("from") == role and m.get("to") == ORCHESTRATOR and m.get("topic") == CONTROL:
                    report = decode_json(m.get("content")) or {}
                    event = report.get("event") if report.get("type") == "event" else None
                    if isinstance(event, dict) and event.get("type") == "agent_message":
                        self.previous_report = True
            if len(entries) < 256:
                return

    def tick(self) -> None:
        if time.monotonic() >= self.next_beat:
            self.beat()
        else:
            self.read_bus()
        if self.cancelled:
            raise Cancelled()

    def run(self) -> tuple[str, str | None]:
        log(f"playing {self.c.role} in pipeline {self.p.id} (entry {self.entry_id})")
        deadline = time.monotonic() + self.c.timeout
        try:
            self.beat()
            if self.cancelled:
                raise Cancelled()
            if self.previous_critique is not None:
                # a worker that died after its critique: finish its work instead of repeating it
                if not self.previous_report:
                    self.report(self.previous_critique)
                return "done", None
            while True:
                proposals = self.proposals()
                if proposals:
                    break
                if time.monotonic() >= deadline:
                    return "idle", f"no proposal within {self.c.timeout:g}s"
                time.sleep(POLL_SECS)
                self.tick()
            text = critique(self.c.role, proposals)
            self.tick()
            self.c.publish(self.p, BROADCAST, "critique", text)
            self.report(text)
            return "done", None
        except Cancelled:
            log(f"cancelled by {ORCHESTRATOR} in pipeline {self.p.id}")
            return "idle", "cancelled"

    def report(self, text: str) -> None:
        self.c.report(self.p, "agent_message", {
            "pipeline_id": self.p.id,
            "from": self.c.role,
            "to": BROADCAST,
            "content": text,
        })

    def proposals(self) -> list[dict[str, Any]]:
        """The pipeline's proposals in creation order, with their status (one MULTI/EXEC)."""
        pipe = self.c.r.pipeline(transaction=True)
        pipe.lrange(self.p.key("proposal_ids"), 0, -1)
        pipe.hgetall(self.p.key("proposals"))
        pipe.hgetall(self.p.key("proposal_status"))
        pipe.hgetall(self.p.key("votes"))
        ids, bodies, statuses, votes = retry("reading proposals", pipe.execute)
        order = list(dict.fromkeys(ids)) + sorted(set(bodies) - set(ids))
        out = []
        for pid in order:
            body = decode_json(bodies.get(pid))
            if body is None or body.get("v") != WIRE_VERSION:
                continue  # unknown version or damaged: refuse rather than guess
            body["status"] = statuses.get(pid, "OPEN")
            vs = decode_json(votes.get(pid, "[]"), want=list)
            body["votes"] = vs if vs is not None else []
            out.append(body)
        return out


def decode_json(raw: Any, want: type = dict) -> Any:
    if not isinstance(raw, str):
        return None
    try:
        v = json.loads(raw)
    except ValueError:
        return None
    return v if isinstance(v, want) else None


def decode_message(raw: Any) -> dict[str, Any] | None:
    m = decode_json(raw)
    if m is None or m.get("v") != WIRE_VERSION:
        return None
    return m


def one_line(text: Any, limit: int) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def critique(role: str, proposals: list[dict[str, Any]]) -> str:
    """The review. Proposal text was written by other agents: it is data, quoted, never obeyed."""
    parts = []
    for p in proposals[:10]:
        approvals = sum(1 for v in p["votes"] if isinstance(v, dict) and v.get("approve") is True)
        rejections = len(p["votes"]) - approvals
        words = len(str(p.get("content", "")).split())
        remark = "thin, needs detail" if words < 20 else "substantive"
        parts.append(f'"{one_line(p.get("title"), 80)}" ({p.get("id")}, {p["status"]}, '
                     f"{approvals}+/{rejections}-, {words} words: {remark})")
    more = f"; and {len(proposals) - 10} more" if len(proposals) > 10 else ""
    return f"{role}: {len(proposals)} proposal(s) reviewed: " + "; ".join(parts) + more


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="A governance agent in Python: plays a custom critic role over Redis "
        "(docs/wire-protocol.md).")
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
                    help="Redis / DragonflyDB URL (default: $REDIS_URL or redis://127.0.0.1:6379)")
    ap.add_argument("--role", default="CRITIC", help="the role to play (default CRITIC)")
    ap.add_argument("--name", default=None,
                    help="consumer name, unique among workers (default py-<host>-<pid>)")
    ap.add_argument("--once", action="store_true", help="exit after one work item")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds to wait for a work item (with --once) and, per item, for a "
                    "proposal to review (default 300)")
    ap.add_argument("--lease-ms", type=int, default=5000,
                    help="work lease in ms, as the server's GOVERNANCE_LEASE_MS (default 5000)")
    ap.add_argument("--prefix", default="gov", help="key prefix (default gov)")
    ap.add_argument("--stream-maxlen", type=int, default=0,
                    help="trim the bus log to about this many messages, as the server's "
                    "stream_maxlen (default 0: no trimming)")
    args = ap.parse_args(argv)
    if args.name is None:
        args.name = default_name()
    try:
        check_id("role", args.role, ROLE_RE)
        check_id("consumer name", args.name)
        check_id("key prefix", args.prefix)
    except AgentError as e:
        ap.error(str(e))
    if args.timeout <= 0:
        ap.error("--timeout must be positive")
    if args.lease_ms < 300:
        ap.error("--lease-ms must be at least 300")
    if args.stream_maxlen < 0:
        ap.error("--stream-maxlen must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    where = redacted(args.redis_url)
    try:
        r = redis.Redis.from_url(args.redis_url, decode_responses=True, socket_connect_timeout=5,
                                 socket_timeout=15)
        retry(f"connecting to {where}", r.ping)
    except (ValueError, redis.exceptions.RedisError) as e:
        log(f"cannot use Redis at {where}: {type(e).__name__}: {e}")
        return 1
    except AgentError as e:
        log(str(e))
        return 1
    critic = Critic(r, args)
    try:
        critic.join()
        say(f"ready: {args.name} waits for work on {critic.stream}")
        deadline = time.monotonic() + args.timeout
        while True:
            left = deadline - time.monotonic()
            if args.once and left <= 0:
                log(f"no work for {args.role} within {args.timeout:g}s")
                return 3
            entry = critic.claim(block_ms=max(1, min(1000, int(left * 1000))) if args.once else 1000)
            if entry is None:
                continue
            outcome = critic.play(*entry)
            if args.once and outcome is not None and outcome != "dropped":
                return 0
    except KeyboardInterrupt:
        log("interrupted: work in progress stays pending for another worker")
        return 130
    except AgentError as e:
        log(str(e))
        return 1
    except redis.exceptions.RedisError as e:
        log(f"Redis error: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
