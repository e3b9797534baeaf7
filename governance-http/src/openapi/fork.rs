//! The OpenAPI path and request schema of `POST /api/pipeline/{id}/fork`
//! ([`crate::routes::fork`]), added to the document by `super::document` (which passes the
//! patterns it shares, so this file needs nothing from it).

use serde_json::{Map, Value, json};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// `paths` with the fork operation added; `id_pattern` is a pipeline id's pattern.
#[must_use]
pub fn with_paths(mut paths: Value, id_pattern: &str) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "201".into(),
        json!({"description": "forked: the new pipeline, the status it starts in and its source point",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Forked"}}}}),
    );
    for (code, desc) in [
        (
            "400",
            "invalid id or body: the message names the field (at_seq, at_status, objective, timeout, roles.<ROLE>); both or neither of at_seq and at_status; an objective at a point after the report",
        ),
        ("401", "missing or wrong API token (when one is configured)"),
        (
            "404",
            "unknown pipeline, a seq past the end of its ledger, or a status it never entered",
        ),
        (
            "408",
            "the request took longer than the server's request timeout",
        ),
        (
            "409",
            "the state at that point cannot be forked (a terminal status or AWAITING_APPROVAL: pick an earlier seq), or its LLM mode is not available here",
        ),
        ("413", "body too large"),
        ("415", "not `Content-Type: application/json`"),
        (
            "503",
            "a backend is unavailable (answered with Retry-After when it is worth retrying)",
        ),
    ] {
        responses.insert(code.into(), err(desc));
    }
    let op = json!({
        "summary": "Fork a pipeline from one of its events", "operationId": "fork",
        "description": "A new pipeline starts from the state this one had after its event `at_seq` (or where it first entered `at_status`): its checkpoint at or before that seq plus its ledger up to it. The new pipeline's first event is `forked_from` {source, seq, status}; it runs on from that status (RUNNING writes the report, REPORT rests or continues as auto_continue says, ORCHESTRATING goes on with the replayed blackboard). The source is not changed.",
        "security": [{"bearer": []}],
        "parameters": [{"name": "id", "in": "path", "required": true, "description": "the pipeline to fork",
                        "schema": {"type": "string", "pattern": id_pattern}}],
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ForkRequest"},
            "example": {"at_status": "REPORT", "roles": {"BETA": {"model": "local/other"}}}}}},
        "responses": responses,
    });
    if let Some(p) = paths.as_object_mut() {
        p.insert("/api/pipeline/{id}/fork".into(), json!({"post": op}));
    }
    paths
}

/// The `ForkRequest` and `Forked` schemas (`roles` refers to the document's `Roles`):
/// `id_pattern` a pipeline id's pattern, `non_blank` an objective's (not only white space).
#[must_use]
pub fn schemas(max_objective_len: usize, id_pattern: &str, non_blank: &str) -> Map<String, Value> {
    let mut m = Map::new();
    let common = json!({
        "objective": {"type": ["string", "null"], "minLength": 1, "maxLength": max_objective_len, "pattern": non_blank,
                      "description": "a new objective: only at a point before the report is written (SPAWNED, RUNNING); null or absent: the source's"},
        "timeout": {"type": ["integer", "null"], "minimum": 1, "maximum": 86_400,
                    "description": "orchestration timeout in seconds; null or absent: the source's"},
        "roles": {"oneOf": [{"$ref": "#/components/schemas/Roles"}, {"type": "null"}],
                  "description": "per-role settings over the source's, field by field; null or absent: the source's"},
    });
    let at_seq = json!({"type": "integer", "minimum": 1,
                        "description": "fork after the source's event with this seq"});
    let statuses =
        governance_core::PipelineStatus::ALL.map(governance_core::PipelineStatus::as_str);
    let at_status = json!({"type": "string", "enum": statuses,
                           "description": "fork after the event where the source first entered this status"});
    let variant = |key: &str, schema: &Value| {
        let mut props = common.as_object().cloned().unwrap_or_default();
        props.insert(key.into(), schema.clone());
        json!({"type": "object", "required": [key], "additionalProperties": false, "properties": props})
    };
    m.insert(
        "ForkRequest".into(),
        json!({"description": "exactly one of at_seq and at_status, and optional overrides",
               "oneOf": [variant("at_seq", &at_seq), variant("at_status", &at_status)]}),
    );
    m.insert(
        "Forked".into(),
        json!({"type": "object", "required": ["pipeline_id", "status", "forked_from"], "properties": {
            "pipeline_id": {"type": "string", "pattern": id_pattern},
            "status": {"$ref": "#/components/schemas/PipelineStatus"},
            "forked_from": {"type": "object", "required": ["pipeline_id", "seq"], "properties": {
                "pipeline_id": {"type": "string", "pattern": id_pattern},
                "seq": {"type": "integer", "minimum": 1}}}}}),
    );
    m
}
