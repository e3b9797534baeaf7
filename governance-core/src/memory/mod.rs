//! In-memory backends: correct under concurrency, for tests and the embedded default.
