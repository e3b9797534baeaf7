//! The shape an answer is asked in ([`ResponseFormat`]) and the compatibility reading of
//! requests recorded before it existed (they carried `"json": true/false`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The shape a model is asked to answer in (OpenAI's / OpenRouter's `response_format`).
///
/// Serialized as `{"type": "text"}`, `{"type": "json_object"}` or
/// `{"type": "json_schema", "name": …, "schema": {…}, "strict": true}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (no `response_format` sent); answers are parsed leniently.
    #[default]
    Text,
    /// Any JSON object (`{"type": "json_object"}`, "JSON mode").
    JsonObject,
    /// A JSON object that follows `schema` (`{"type": "json_schema", …}`, "structured outputs").
    JsonSchema {
        /// The schema's name (`^[a-zA-Z0-9_-]{1,64}$`), e.g. `evaluation`.
        name: String,
        /// The schema (shared: every request of a purpose reuses the same one).
        schema: Arc<serde_json::Value>,
        /// Whether the provider must follow the schema exactly (`strict: true`).
        strict: bool,
    },
}

impl ResponseFormat {
    /// Which of the three formats this is.
    #[must_use]
    pub fn kind(&self) -> ResponseFormatKind {
        match self {
            Self::Text => ResponseFormatKind::Text,
            Self::JsonObject => ResponseFormatKind::JsonObject,
            Self::JsonSchema { .. } => ResponseFormatKind::JsonSchema,
        }
    }

    /// This format lowered to `kind` when `kind` is a weaker one (`json_schema` → `json_object`
    /// → `text`); itself otherwise.
    #[must_use]
    pub fn lowered_to(&self, kind: ResponseFormatKind) -> Self {
        if kind >= self.kind() {
            return self.clone();
        }
        match kind {
            ResponseFormatKind::Text => Self::Text,
            ResponseFormatKind::JsonObject | ResponseFormatKind::JsonSchema => Self::JsonObject,
        }
    }
}

/// The kind of a [`ResponseFormat`], ordered from the weakest (`text`) to the strongest
/// (`json_schema`). Recorded on answers and `llm_call` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatKind {
    /// Free text.
    Text,
    /// JSON mode.
    JsonObject,
    /// Structured outputs (a JSON schema).
    JsonSchema,
}

impl ResponseFormatKind {
    /// The next weaker kind, `None` for `text`.
    #[must_use]
    pub fn weaker(self) -> Option<Self> {
        match self {
            Self::JsonSchema => Some(Self::JsonObject),
            Self::JsonObject => Some(Self::Text),
            Self::Text => None,
        }
    }

    /// The wire name (`text`, `json_object`, `json_schema`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::JsonObject => "json_object",
            Self::JsonSchema => "json_schema",
        }
    }
}

impl std::fmt::Display for ResponseFormatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `response_format` of a stored request, read from either its current form or the
/// `"json": true/false` of requests recorded before formats existed (`true` → JSON mode,
/// `false` or absent → text).
pub(crate) fn from_stored(
    response_format: Option<ResponseFormat>,
    json: Option<bool>,
) -> ResponseFormat {
    match (response_format, json) {
        (Some(f), _) => f,
        (None, Some(true)) => ResponseFormat::JsonObject,
        (None, _) => ResponseFormat::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_serialize_tagged_and_lower_in_order() {
        let schema = ResponseFormat::JsonSchema {
            name: "evaluation".into(),
            schema: Arc::new(serde_json::json!({"type": "object"})),
            strict: true,
        };
        let v = serde_json::to_value(&schema).unwrap();
        assert_eq!(v["type"], "json_schema");
        assert_eq!(v["name"], "evaluation");
        assert_eq!(v["strict"], true);
        assert_eq!(serde_json::from_value::<ResponseFormat>(v).unwrap(), schema);
        assert_eq!(
            serde_json::to_value(ResponseFormat::JsonObject).unwrap(),
            serde_json::json!({"type": "json_object"})
        );
        assert_eq!(
            schema.lowered_to(ResponseFormatKind::JsonObject),
            ResponseFormat::JsonObject
        );
        assert_eq!(
            schema.lowered_to(ResponseFormatKind::Text),
            ResponseFormat::Text
        );
        assert_eq!(schema.lowered_to(ResponseFormatKind::JsonSchema), schema);
        assert_eq!(
            ResponseFormat::Text.lowered_to(ResponseFormatKind::JsonSchema),
            ResponseFormat::Text,
            "never raised"
        );
        assert_eq!(
            ResponseFormatKind::JsonSchema.weaker(),
            Some(ResponseFormatKind::JsonObject)
        );
        assert_eq!(ResponseFormatKind::Text.weaker(), None);
    }
}
