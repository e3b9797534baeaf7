//! Request handlers, grouped by what they serve.

pub mod approval;
pub mod fork;
pub mod ops;
pub mod pipelines;
pub mod streams;
