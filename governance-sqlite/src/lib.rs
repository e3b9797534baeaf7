//! Audit ledger, checkpoints and pipeline registry for governance pipelines on SQLite
