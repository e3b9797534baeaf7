//! The schemas of the per-role settings (`roles` of `POST /api/spawn`): `Roles`, one optional
//! entry per role the server has, and the settings of each kind of role, with every bound
//! [`governance_core::RoleSettings::validate`] enforces.

use governance_core::{MAX_INSTRUCTIONS_LEN, MAX_TEMPERATURE};
use serde_json::{Map, Value, json};

/// A model name: printable ASCII without spaces, 1–200 characters.
pub const MODEL_PATTERN: &str = "^[!-~]{1,200}$";

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The kinds of role, by what their `votes` and `required` may be.
#[derive(Clone, Copy)]
enum Kind {
    /// ALPHA and BETA: always vote; may be required (BETA is by default).
    Voting,
    /// GAMMA (spawned only when needed) and REPORTER (does not vote): never required.
    Unrequired,
    /// A custom role: its votes may not count; required only while they do.
    Custom,
}

fn settings(kind: Kind, max_completion_tokens: u32) -> Value {
    let model = json!({"type": "string", "pattern": MODEL_PATTERN});
    let votes = match kind {
        Kind::Voting | Kind::Unrequired => {
            json!({"enum": [true, null], "description": "built-in roles always vote"})
        }
        Kind::Custom => {
            json!({"type": ["boolean", "null"], "description": "whether its votes count; null or absent: true"})
        }
    };
    let required = match kind {
        Kind::Unrequired => json!({"enum": [false, null],
            "description": "GAMMA (the mediator, spawned only when needed) and REPORTER (no vote) cannot be required"}),
        Kind::Voting | Kind::Custom => json!({"type": ["boolean", "null"],
            "description": "whether the role's approval is required for consensus; null or absent: true for BETA, false otherwise. \
                            Not with votes = false (here or in the server's settings: 400 naming roles.<ROLE>.required)"}),
    };
    let mut s = json!({"type": "object", "additionalProperties": false, "properties": {
        "model": {"type": ["string", "null"], "pattern": MODEL_PATTERN, "description": "model the role asks; null or absent: the pipeline's"},
        "fallback_models": {"type": ["array", "null"], "maxItems": 8, "items": model,
                            "description": "models tried in order when the primary fails; null or absent: OPENROUTER_FALLBACK_MODELS"},
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_TEMPERATURE, "description": "null or absent: 0.2"},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": max_completion_tokens,
                       "description": "completion-token cap per call; null or absent: GOVERNANCE_MAX_COMPLETION_TOKENS"},
        "instructions": {"type": ["string", "null"], "maxLength": MAX_INSTRUCTIONS_LEN,
                         "description": "appended to the role's built-in system prompt"},
        "votes": votes,
        "required": required}});
    if let Kind::Custom = kind {
        // a role whose votes do not count cannot be required
        s["not"] = json!({"type": "object", "required": ["votes", "required"],
            "properties": {"votes": {"const": false}, "required": {"const": true}}});
    }
    s
}

/// `Roles` and the settings schemas it refers to.
pub(super) fn role_schemas(roles: &[String], max_completion_tokens: u32) -> Map<String, Value> {
    let props: Map<String, Value> = roles
        .iter()
        .map(|r| {
            let name = match r.as_str() {
                "ALPHA" | "BETA" => "BuiltinRoleSettings",
                "GAMMA" | "REPORTER" => "UnrequiredRoleSettings",
                _ => "CustomRoleSettings",
            };
            (r.clone(), schema_ref(name))
        })
        .collect();
    let mut m = Map::new();
    m.insert(
        "Roles".into(),
        json!({"type": "object", "additionalProperties": false, "properties": props,
        "description": "settings by role name; a role this server does not have is refused (400)"}),
    );
    m.insert(
        "BuiltinRoleSettings".into(),
        settings(Kind::Voting, max_completion_tokens),
    );
    m.insert(
        "UnrequiredRoleSettings".into(),
        settings(Kind::Unrequired, max_completion_tokens),
    );
    m.insert(
        "CustomRoleSettings".into(),
        settings(Kind::Custom, max_completion_tokens),
    );
    m
}
