//! The prices an [`OpenRouterClient`](crate::OpenRouterClient) knows, for money budgets
//! (filled by `crate::models`).

use std::collections::HashMap;

use governance_core::ModelPrice;
use parking_lot::RwLock;

/// The prices a client knows: the catalog (OpenRouter's model list) and the overrides (the
/// config file's price table), which win.
#[derive(Debug, Default)]
pub(crate) struct PriceBook {
    pub(crate) catalog: RwLock<HashMap<String, ModelPrice>>,
    pub(crate) overrides: RwLock<HashMap<String, ModelPrice>>,
}

impl PriceBook {
    /// The price of `model`: the override, else the catalog's.
    pub(crate) fn get(&self, model: &str) -> Option<ModelPrice> {
        let overridden = self.overrides.read().get(model).copied();
        overridden.or_else(|| self.catalog.read().get(model).copied())
    }
}
