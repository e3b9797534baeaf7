//! Shared helpers for the governance benchmarks.
