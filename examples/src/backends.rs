//! Builds the [`Governance`] engine of `governance serve` from the environment.
//!
//! | variable | effect |
//! |---|---|
//! | `DATABASE_URL` | `postgres://…`: the ledger, checkpoints, registry and LLM exchanges in PostgreSQL (the system of record; `GOVERNANCE_DB` is then not used). With `GOVERNANCE_CLUSTER=true` the nodes share it: ownership leases in PostgreSQL, Redis for blackboard, bus and wake-ups |
//! | `GOVERNANCE_PG_SCHEMA` | the PostgreSQL schema holding the tables (created when missing; default: the connection's `search_path`, normally `public`) |
//! | `GOVERNANCE_DB` | SQLite file for the ledger, checkpoints and registry (default `./governance.db`; `memory` keeps them in memory) |
//! | `REDIS_URL` | blackboard and bus on Redis / DragonflyDB (default: in memory); password from the URL or the Dragonfly secret |
//! | `GOVERNANCE_CLUSTER` | `true`: several nodes share one system of record. With `DATABASE_URL`: PostgreSQL (leases there too) and `REDIS_URL` for the blackboard and bus. Without: `REDIS_URL` holds ledger, checkpoints and registry with ownership leases; `GOVERNANCE_DB` becomes this node's archive of the pipelines it finished |
//! | `GOVERNANCE_ACCEPT_REDIS_LOSS` | `true`: cluster mode starts on a Redis that reports no persistence (`appendonly no`, or `CONFIG` refused), accepting that a restart of it erases every pipeline (default `false`: refuse to start) |
//! | `GOVERNANCE_LEASE_MS` | pipeline ownership lease in cluster mode, and workers' work lease (default 5000) |
//! | `GOVERNANCE_REMOTE_ROLES` | comma-separated roles played by worker processes (`governance worker`) instead of this process: `ALPHA`, `BETA`, `GAMMA` replace the local agents, any other name joins as an extra role whose votes do not count; needs `REDIS_URL` |
//! | `GOVERNANCE_LLM_MODE` | `local` or `openrouter` (unset: `openrouter` when a key is found, else `local`) |
//! | `GOVERNANCE_LOCAL_LATENCY_MS`, `GOVERNANCE_LOCAL_SEED` | the local LLM's latency (default [`SERVE_LOCAL_LATENCY_MS`], so a person can watch) and seed |
//! | `GOVERNANCE_CONFIG`, `GOVERNANCE_ROLE_<ROLE>_<FIELD>` | per-role settings (`crate::role_config`) |
//! | the seed's variables | [`Config::from_env`] |
//!
//! With a SQLite or PostgreSQL database every LLM exchange is recorded in it (`governance replay`
//! reads SQLite files).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use governance_core::{
    BreakerLlm, CircuitBreaker, Config, ExchangeStore, Governance, LlmClient, LocalLlm,
    LocalLlmConfig, RecordingLlm, Role,
};
use governance_openrouter::{
    ChainSecretSource, LlmMode, OpenRouterClient, OpenRouterConfig, resolve_dragonfly_password,
    resolve_openrouter_key, select_mode,
};
use governance_postgres::{PgConfig, PgLeases, PgStore};
use governance_redis::{
    Persistence, RedisBackend, RedisConfig, RedisLeases, RedisStore, RemoteRole,
};
use governance_sqlite::SqliteStore;
use secrecy::ExposeSecret as _;

/// The engine and what it was built from.
#[derive(Debug)]
pub struct Backends {
    /// The engine.
    pub governance: Governance,
    /// `(component, description)` pairs for the start-up line and `/readyz`.
    pub summary: Vec<(String, String)>,
    /// Process-wide circuit breakers per LLM mode (for `/metrics`).
    pub breakers: Vec<(String, Arc<CircuitBreaker>)>,
    /// Whether the ledger/registry survive a restart (then incomplete pipelines are resumed).
    pub persistent: bool,
    /// The default LLM mode and why it was chosen.
    pub mode: (String, &'static str),
    /// Cluster mode on Redis (`GOVERNANCE_CLUSTER=true` without `DATABASE_URL`): the leases
    /// to run and the archive.
    pub cluster: Option<Cluster>,
    /// Cluster mode on PostgreSQL (`GOVERNANCE_CLUSTER=true` with `DATABASE_URL`): the
    /// leases to run (run them with [`PgLeases::run`]).
    pub pg_cluster: Option<PgLeases>,
}

/// The parts of a node in cluster mode.
#[derive(Debug)]
pub struct Cluster {
    /// This node's pipeline ownership leases (run them with [`RedisLeases::run`]).
    pub leases: RedisLeases,
    /// The shared ledger/checkpoint/registry store.
    pub store: RedisStore,
    /// This node's SQLite archive of the pipelines it finished (`GOVERNANCE_DB`).
    pub archive: Option<Arc<SqliteStore>>,
    /// Ids of pipelines this node finished, to archive.
    pub finished: tokio::sync::mpsc::UnboundedReceiver<governance_core::PipelineId>,
}

/// Registers the roles of `GOVERNANCE_REMOTE_ROLES` as [`RemoteRole`]s on `redis`: `ALPHA`,
/// `BETA`, `GAMMA` replace the local agents, other names join as extra roles whose votes do
/// not count. Returns the builder and the roles registered.
///
/// # Errors
/// An invalid role name.
pub fn with_remote_roles(
    mut builder: governance_core::GovernanceBuilder,
    redis: &RedisBackend,
) -> anyhow::Result<(governance_core::GovernanceBuilder, Vec<String>)> {
    let roles = remote_roles()?;
    for role in &roles {
        let votes = [Role::ALPHA, Role::BETA, Role::GAMMA].contains(&Role::new(role)?);
        let agent = Arc::new(RemoteRole::new(redis, role, votes)?);
        // ALPHA, BETA and GAMMA replace the local agents; other names join as extra roles
        builder = builder.remote_role(agent);
    }
    Ok((builder, roles))
}

/// Latency of each local-LLM call in `governance serve` when `GOVERNANCE_LOCAL_LATENCY_MS` is
/// unset: enough for a person to watch a pipeline move on the dashboard or an event stream
/// (a pipeline then takes a few seconds instead of milliseconds). `run`, `bench` and `worker`
/// default to 0.
pub const SERVE_LOCAL_LATENCY_MS: u64 = 300;

/// The local LLM from `GOVERNANCE_LOCAL_SEED` and `GOVERNANCE_LOCAL_LATENCY_MS` (default
/// `default_latency_ms`).
///
/// # Errors
/// A variable that is not a whole number.
pub fn local_llm(default_latency_ms: u64) -> anyhow::Result<LocalLlm> {
    Ok(LocalLlm::new({
        let mut conf = LocalLlmConfig::default();
        conf.seed = env_u64("GOVERNANCE_LOCAL_SEED", 0)?;
        conf.latency =
            Duration::from_millis(env_u64("GOVERNANCE_LOCAL_LATENCY_MS", default_latency_ms)?);
        conf
    }))
}

/// `GOVERNANCE_REMOTE_ROLES`, validated.
///
/// # Errors
/// A role name that is not `[A-Za-z0-9_-]{1,32}`.
pub fn remote_roles() -> anyhow::Result<Vec<String>> {
    let Some(v) = env("GOVERNANCE_REMOTE_ROLES") else {
        return Ok(Vec::new());
    };
    let mut roles = Vec::new();
    for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        if r.len() > 32 || governance_core::validate_id("role", r).is_err() {
            anyhow::bail!(
                "GOVERNANCE_REMOTE_ROLES: invalid role {r:?} (1-32 of A-Z, a-z, 0-9, _ or -)"
            );
        }
        if !roles.iter().any(|x| x == r) {
            roles.push(r.to_owned());
        }
    }
    Ok(roles)
}

/// `GOVERNANCE_NODE_ID` (or `<hostname>-<pid>`) made a valid id: other characters become `-`.
#[must_use]
pub fn cluster_node_id() -> String {
    let raw = crate::telemetry::node_id();
    let id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() { "node".to_owned() } else { id }
}

/// The process environment as the libraries' variable lookup
/// (`ChainSecretSource::from_lookup`, `LlmMode::from_lookup`, `OpenRouterConfig::from_lookup`):
/// the library crates never read the environment themselves (ARCHITECTURE.md, "Configuration").
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn env(name: &str) -> Option<String> {
    process_env(name).filter(|v| !v.trim().is_empty())
}

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    env(name).map_or(Ok(default), |v| {
        v.trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number"))
    })
}

/// Builds the engine from the environment.
///
/// # Errors
/// A configuration variable is invalid, a backend cannot be opened or reached, or the
/// OpenRouter mode was asked for without a key.
pub async fn from_env() -> anyhow::Result<Backends> {
    let config = Config::from_env().context("reading configuration")?;
    let breaker_config = config.breaker;
    let roles = crate::role_config::load(std::env::vars())?;
    let mut summary = Vec::new();
    if let Some(path) = env("GOVERNANCE_CONFIG") {
        summary.push(("config".to_owned(), path));
    }
    for (role, s) in &roles {
        if let Some(m) = &s.model {
            summary.push((format!("model:{role}"), m.clone()));
        }
    }
    let mut builder = Governance::builder().role_settings(roles);
    let mut breakers = Vec::new();

    let clustered = match env("GOVERNANCE_CLUSTER") {
        Some(v) => governance_core::parse_bool("GOVERNANCE_CLUSTER", &v)?,
        None => false,
    };
    let postgres = match env("DATABASE_URL") {
        Some(url) => Some(connect_postgres(&url).await?),
        None => None,
    };
    let db = env("GOVERNANCE_DB").unwrap_or_else(|| "./governance.db".to_owned());
    let persistent = postgres.is_some() || db != "memory";
    let mut recorder: Option<Arc<dyn ExchangeStore>> = None;
    let mut sqlite = None;
    if let Some(pg) = &postgres {
        recorder = Some(Arc::new(pg.clone()));
        if !clustered {
            builder = builder.store(Arc::new(pg.clone()));
            summary.push(("ledger".to_owned(), format!("postgres:{}", pg.target())));
        }
    } else if persistent {
        let store = Arc::new(
            SqliteStore::open(&db)
                .await
                .with_context(|| format!("opening GOVERNANCE_DB={db}"))?,
        );
        recorder = Some(store.clone());
        if !clustered {
            builder = builder.store(store.clone());
            summary.push(("ledger".to_owned(), format!("sqlite:{db}")));
        }
        sqlite = Some(store);
    } else if !clustered {
        summary.push(("ledger".to_owned(), "memory".to_owned()));
    }

    let secrets = ChainSecretSource::from_lookup(process_env).context("reading secret sources")?;
    let mut cluster = None;
    let mut pg_cluster = None;
    if let Some(url) = env("REDIS_URL") {
        let (redis, redacted) = connect_redis(&url, &secrets).await?;
        builder = builder
            .blackboard(redis.blackboard())
            .bus(redis.bus())
            // money budgets shared with the other nodes and the workers on this Redis
            .cost_ledger(redis.cost_ledger());
        summary.push(("blackboard".to_owned(), format!("redis:{redacted}")));
        summary.push(("bus".to_owned(), format!("redis:{redacted}")));
        let roles;
        (builder, roles) = with_remote_roles(builder, &redis)?;
        for role in roles {
            summary.push((format!("role:{role}"), "remote (workers)".to_owned()));
        }
        if clustered && let Some(pg) = &postgres {
            let node = cluster_node_id();
            let lease = Duration::from_millis(env_u64("GOVERNANCE_LEASE_MS", 5000)?);
            let (leases, store) = pg.cluster(&node, lease)?;
            builder = builder
                .store(Arc::new(store))
                .ownership(Arc::new(leases.clone()));
            summary.push((
                "ledger".to_owned(),
                format!("postgres:{} (cluster node {node})", pg.target()),
            ));
            pg_cluster = Some(leases);
        } else if clustered {
            require_persistence(&redis, &redacted).await?;
            let node = cluster_node_id();
            let lease = Duration::from_millis(env_u64("GOVERNANCE_LEASE_MS", 5000)?);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (leases, store) = redis.cluster(&node, lease)?;
            let leases = leases.on_finished(tx);
            builder = builder
                .store(Arc::new(store.clone()))
                .ownership(Arc::new(leases.clone()));
            summary.push((
                "ledger".to_owned(),
                format!(
                    "redis:{redacted} (cluster node {node}, archive {})",
                    if persistent { db.as_str() } else { "none" }
                ),
            ));
            cluster = Some(Cluster {
                leases,
                store,
                archive: sqlite.clone(),
                finished: rx,
            });
        }
    } else if clustered {
        anyhow::bail!(
            "GOVERNANCE_CLUSTER=true needs REDIS_URL (the nodes share the blackboard and bus in Redis)"
        );
    } else if !remote_roles()?.is_empty() {
        anyhow::bail!("GOVERNANCE_REMOTE_ROLES needs REDIS_URL (workers meet the server in Redis)");
    } else {
        summary.push(("blackboard".to_owned(), "memory".to_owned()));
        summary.push(("bus".to_owned(), "memory".to_owned()));
    }

    let local = local_llm(SERVE_LOCAL_LATENCY_MS)?;
    // recording wraps the outermost client, so every attempt the agents make is replayable
    let record = |client: Arc<dyn LlmClient>| -> Arc<dyn LlmClient> {
        match &recorder {
            Some(store) => Arc::new(RecordingLlm::new(client, store.clone())),
            None => client,
        }
    };
    builder = builder.llm("local", record(Arc::new(local)));
    let key = resolve_openrouter_key(&secrets)
        .await
        .context("reading the OpenRouter key")?;
    let (mode, why) = select_mode(LlmMode::from_lookup(process_env)?, key.is_some())?;
    if let Some(key) = key {
        // registered whenever a key exists, so a request may ask for `mode: "openrouter"`
        let client = OpenRouterClient::new(OpenRouterConfig::from_lookup(process_env, Some(key))?)?;
        // prices for money budgets: the config file's table over OpenRouter's model list
        client.set_prices(crate::role_config::load_prices(std::env::vars())?);
        client.start_model_prices().await;
        let breaker = Arc::new(CircuitBreaker::new(breaker_config));
        builder = builder.llm(
            "openrouter",
            record(Arc::new(BreakerLlm::new(Arc::new(client), breaker.clone()))),
        );
        breakers.push(("openrouter".to_owned(), breaker));
    }
    builder = builder.default_mode(mode.as_str());
    summary.push(("llm".to_owned(), mode.as_str().to_owned()));

    let governance = builder.config(config).build()?;
    Ok(Backends {
        governance,
        summary,
        breakers,
        persistent: persistent && cluster.is_none() && pg_cluster.is_none(),
        mode: (mode.as_str().to_owned(), why),
        cluster,
        pg_cluster,
    })
}

/// Connects to PostgreSQL at `url` (`DATABASE_URL`, the password in the URL) with the tables
/// in `GOVERNANCE_PG_SCHEMA` when set, and applies the schema migrations it lacks.
///
/// # Errors
/// An invalid schema name, or the server cannot be reached or refuses the credentials (the
/// message shows the URL without its password).
pub async fn connect_postgres(url: &str) -> anyhow::Result<PgStore> {
    let config = pg_config(url)?;
    let redacted = config.redacted_url();
    PgStore::connect(config)
        .await
        .with_context(|| format!("connecting to DATABASE_URL={redacted}"))
}

/// The [`PgConfig`] of `url` and `GOVERNANCE_PG_SCHEMA`.
///
/// # Errors
/// An invalid schema name.
pub fn pg_config(url: &str) -> anyhow::Result<PgConfig> {
    let mut config = PgConfig::new(url);
    if let Some(schema) = env("GOVERNANCE_PG_SCHEMA") {
        governance_postgres::check_schema(schema.trim())?;
        config = config.with_schema(schema.trim());
    }
    Ok(config)
}

/// Cluster mode keeps the ledger, checkpoints and registry in Redis: refuses a server that
/// reports no persistence (or does not say) unless `GOVERNANCE_ACCEPT_REDIS_LOSS=true` says
/// the operator accepts losing the pipelines when it restarts.
///
/// # Errors
/// The server has no append-only file and the loss is not accepted; the variable is invalid;
/// the server cannot be asked.
async fn require_persistence(redis: &RedisBackend, redacted: &str) -> anyhow::Result<()> {
    let accept = match env("GOVERNANCE_ACCEPT_REDIS_LOSS") {
        Some(v) => governance_core::parse_bool("GOVERNANCE_ACCEPT_REDIS_LOSS", &v)?,
        None => false,
    };
    let why = match redis
        .persistence()
        .await
        .with_context(|| format!("asking REDIS_URL={redacted} for its persistence"))?
    {
        Persistence::AppendOnly => return Ok(()),
        Persistence::NoAppendOnly => "CONFIG GET appendonly says no".to_owned(),
        Persistence::Unknown(why) => why,
    };
    if accept {
        tracing::warn!(
            redis = %redacted,
            reason = %why,
            "cluster mode on a Redis without persistence: a restart of it erases every pipeline (GOVERNANCE_ACCEPT_REDIS_LOSS=true)"
        );
        return Ok(());
    }
    anyhow::bail!(
        "GOVERNANCE_CLUSTER=true keeps the ledger, checkpoints and registry in Redis, but \
         REDIS_URL={redacted} reports no persistence ({why}): a restart of it would erase every \
         pipeline. Turn on the append-only file (redis-server --appendonly yes, or CONFIG SET \
         appendonly yes plus CONFIG REWRITE), or set GOVERNANCE_ACCEPT_REDIS_LOSS=true to accept \
         losing the pipelines when Redis restarts"
    )
}

/// Connects to Redis / DragonflyDB at `url`, with the password from the secret sources
/// (`DRAGONFLY_PASSWORD`, `REDIS_PASSWORD`, Vault) overriding the URL's. Returns the backend and
/// the URL with its password redacted, for logs.
///
/// # Errors
/// The secret sources fail, or the server cannot be reached.
pub async fn connect_redis(
    url: &str,
    secrets: &ChainSecretSource,
) -> anyhow::Result<(RedisBackend, String)> {
    let mut rc = RedisConfig::new(url);
    let redacted = rc.redacted_url();
    if let Some(pw) = resolve_dragonfly_password(secrets)
        .await
        .context("reading the Redis/Dragonfly password")?
    {
        rc = rc.with_password(pw.expose_secret());
    }
    let redis = RedisBackend::connect(rc)
        .await
        .with_context(|| format!("connecting to REDIS_URL={redacted}"))?;
    Ok((redis, redacted))
}
