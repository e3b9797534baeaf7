//! Which answer format each model was last found to take, so a call does not ask again for a
//! format the model's provider already refused ([`crate::structured`]).
//!
//! The memo is **process-local** and lives as long as the [`crate::OpenRouterClient`] (its
//! clones share it): it is not persisted and not shared between nodes, so a restarted process
//! (or another node) learns again, at the cost of one refused request per model and format.
//! It only ever lowers a model's format (`json_schema` → `json_object` → `text`); a provider
//! that later gains support is used at the stronger format again after a restart.

use std::collections::HashMap;

use governance_core::ResponseFormatKind;
use parking_lot::Mutex;

/// At most this many models are remembered; past it a refusal is still handled, just not
/// remembered (so the memo cannot grow without bound).
const MAX_MODELS: usize = 1024;

/// The strongest format known to work, per model (absent: none refused yet).
#[derive(Debug, Default)]
pub(crate) struct FormatMemo {
    by_model: Mutex<HashMap<String, ResponseFormatKind>>,
}

impl FormatMemo {
    /// The format to start a call for `model` with: `asked`, or weaker when the model
    /// refused `asked` before.
    pub(crate) fn start(&self, model: &str, asked: ResponseFormatKind) -> ResponseFormatKind {
        self.by_model
            .lock()
            .get(model)
            .map_or(asked, |known| (*known).min(asked))
    }

    /// Notes that `model` refused every format stronger than `to`.
    pub(crate) fn lower(&self, model: &str, to: ResponseFormatKind) {
        let mut map = self.by_model.lock();
        if let Some(known) = map.get_mut(model) {
            *known = (*known).min(to);
        } else if map.len() < MAX_MODELS {
            map.insert(model.to_owned(), to);
        } else {
            tracing::debug!(model, "format memo full; the refusal is not remembered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResponseFormatKind::{JsonObject, JsonSchema, Text};

    #[test]
    fn a_model_is_only_ever_lowered_and_never_above_what_is_asked() {
        let memo = FormatMemo::default();
        assert_eq!(memo.start("a", JsonSchema), JsonSchema);
        memo.lower("a", JsonObject);
        assert_eq!(memo.start("a", JsonSchema), JsonObject);
        assert_eq!(
            memo.start("a", Text),
            Text,
            "never raised above the asked format"
        );
        assert_eq!(memo.start("b", JsonSchema), JsonSchema, "per model");
        memo.lower("a", Text);
        memo.lower("a", JsonObject);
        assert_eq!(memo.start("a", JsonSchema), Text, "never raised again");
        for i in 0..MAX_MODELS + 10 {
            memo.lower(&format!("m{i}"), Text);
        }
        assert!(memo.by_model.lock().len() <= MAX_MODELS);
    }
}
