//! Conformance suites every backend runs from its own tests (feature `testkit`).
