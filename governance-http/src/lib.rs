//! axum router with the governance pipeline API, live events and dashboard
