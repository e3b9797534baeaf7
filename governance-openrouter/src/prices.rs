//! The prices an [`OpenRouterClient`](crate::OpenRouterClient) knows, for money budgets
//! (filled by `crate::models`).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use governance_core::ModelPrice;

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
        if let Some(p) = self
            .overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
        {
            return Some(*p);
        }
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
            .copied()
    }
}
