//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand next to the handlers
//! (a test checks that every route of the router is in it).

use serde_json::{Value, json};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(desc: &str, schema: &Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn obj(r: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{r}")})
}

fn id_param(location: &str) -> Value {
    json!({"name": if location == "path" { "id" } else { "pipeline_id" }, "in": location, "required": true,
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}})
}

fn q(name: &str, ty: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}, "description": desc})
}

fn secured(mut op: Value) -> Value {
    op["security"] = json!([{"bearer": []}]);
    op["responses"]["401"] = err("missing or wrong API token (when one is configured)");
    op
}

fn feed_params() -> Value {
    json!([
        q("pipeline_id", "string", "only this pipeline's events"),
        q(
            "since",
            "integer",
            "replay events with seq > since first (needs pipeline_id)"
        ),
        q(
            "token",
            "string",
            "the API token, for browsers that cannot send headers"
        ),
    ])
}

/// The document.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn document() -> Value {
    let any = json!({"type": "object"});
    let paths = json!({
        "/api/spawn": {"post": secured(json!({
            "summary": "Spawn a pipeline", "operationId": "spawn",
            "requestBody": {"required": true, "content": {"application/json": {"schema": obj("SpawnRequest")}}},
            "responses": {"201": ok("spawned", &obj("Spawned")), "400": err("invalid body, objective or mode"),
                          "413": err("body too large"), "415": err("not JSON")}}))},
        "/api/checkpoint/report": {"get": secured(json!({
            "summary": "The report and its continuation status", "operationId": "report",
            "parameters": [id_param("query")],
            "responses": {"200": ok("report", &obj("ReportStatus")), "400": err("invalid id"), "404": err("unknown pipeline")}}))},
        "/api/pipeline/continue": {"post": secured(json!({
            "summary": "Continue a pipeline resting at REPORT into orchestration", "operationId": "continue",
            "requestBody": {"required": true, "content": {"application/json": {"schema": obj("ContinueRequest")}}},
            "responses": {"202": ok("orchestrating", &obj("Status")), "400": err("invalid body, id or mode"),
                          "404": err("unknown pipeline"), "409": err("not at REPORT"), "415": err("not JSON"),
                          "504": err("cluster mode: handed to the owning node, not continued within 60 s")}}))},
        "/api/pipeline/logs": {"get": secured(json!({
            "summary": "The pipeline's audit ledger, paged by seq", "operationId": "logs",
            "parameters": [id_param("query"), q("after", "integer", "events with seq > after (default 0)"),
                           q("limit", "integer", "page size, 1-1000 (default 100)")],
            "responses": {"200": ok("events", &obj("Logs")), "400": err("invalid id or limit"), "404": err("unknown pipeline")}}))},
        "/api/pipeline/{id}": {"get": secured(json!({
            "summary": "The pipeline record", "operationId": "getPipeline", "parameters": [id_param("path")],
            "responses": {"200": ok("record", &obj("PipelineRecord")), "400": err("invalid id"), "404": err("unknown pipeline")}}))},
        "/api/pipeline/{id}/orchestration": {"get": secured(json!({
            "summary": "Orchestration status: agents, GAMMA, blackboard, usage, results", "operationId": "orchestration",
            "parameters": [id_param("path")],
            "responses": {"200": ok("status", &obj("Orchestration")), "400": err("invalid id"), "404": err("unknown pipeline")}}))},
        "/api/pipeline/{id}/stop": {"post": secured(json!({
            "summary": "Emergency stop; answers the final status", "operationId": "stop", "parameters": [id_param("path")],
            "responses": {"200": ok("stopped (or already ended)", &obj("Status")), "400": err("invalid id"), "404": err("unknown pipeline"),
                          "409": err("another process runs it and it cannot be reached"),
                          "504": err("cluster mode: handed to the owning node, not stopped within 60 s")}}))},
        "/api/pipelines": {"get": secured(json!({
            "summary": "Pipelines, newest first", "operationId": "list",
            "parameters": [q("status", "string", "comma-separated statuses, e.g. RUNNING,REPORT"),
                           q("limit", "integer", "page size, 1-1000 (default 50)"), q("offset", "integer", "skip this many")],
            "responses": {"200": ok("page", &obj("PipelineList")), "400": err("invalid status or limit")}}))},
        "/api/events": {"get": secured(json!({
            "summary": "Live events as Server-Sent Events (event = type, id = seq, data = Event JSON)", "operationId": "events",
            "parameters": feed_params(),
            "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {"schema": obj("Event")}}},
                          "400": err("invalid id, or since without pipeline_id"), "404": err("unknown pipeline")}}))},
        "/ws": {"get": secured(json!({
            "summary": "Live events over WebSocket (one Event JSON per text message; {\"type\":\"resync\"} when a slow client missed events)",
            "operationId": "ws", "parameters": feed_params(),
            "responses": {"101": {"description": "switching protocols"}, "400": err("not a WebSocket handshake, invalid id or since without pipeline_id"),
                          "403": err("Origin not allowed"), "404": err("unknown pipeline")}}))},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": ok("up", &any)}}},
        "/readyz": {"get": {"summary": "Readiness: blackboard, bus and ledger answer", "operationId": "readyz",
                            "responses": {"200": ok("ready", &any), "503": err("a backend is unreachable or the server is shutting down")}}},
        "/metrics": {"get": secured(json!({"summary": "Prometheus metrics (no token needed when the server sets GOVERNANCE_METRICS_PUBLIC=true)", "operationId": "metrics",
                             "responses": {"200": {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}))},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "responses": {"200": ok("OpenAPI 3.1", &any)}}},
        "/docs": {"get": {"summary": "API documentation page", "operationId": "docs",
                          "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
        "/": {"get": {"summary": "Dashboard", "operationId": "dashboard",
                      "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
    });
    let status = json!({"type": "string", "enum": ["SPAWNED", "RUNNING", "REPORT", "ORCHESTRATING", "COMPLETED", "FAILED", "TIMEOUT", "ORCHESTRATION_FAILED", "ORCHESTRATION_ERROR", "STOPPED"]});
    let schemas = json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "examples": ["invalid_input", "not_found", "invalid_transition", "unauthorized", "payload_too_large"]},
                           "message": {"type": "string"}}}}},
        "PipelineStatus": status,
        "SpawnRequest": {"type": "object", "required": ["objective"], "additionalProperties": false, "properties": {
            "objective": {"type": "string", "minLength": 1, "description": "at most the server's objective limit (default 4000 characters)"},
            "auto_continue": {"type": "boolean", "description": "default AUTO_ORCHESTRATE"},
            "mode": {"type": "string", "enum": ["local", "openrouter"]}, "model": {"type": "string"},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 86400, "description": "orchestration timeout in seconds"}}},
        "ContinueRequest": {"type": "object", "required": ["pipeline_id"], "additionalProperties": false, "properties": {
            "pipeline_id": {"type": "string"}, "mode": {"type": "string", "enum": ["local", "openrouter"]},
            "model": {"type": "string"}, "timeout": {"type": "integer", "minimum": 1, "maximum": 86400}}},
        "Spawned": {"type": "object", "properties": {"pipeline_id": {"type": "string"}, "status": obj("PipelineStatus"),
            "auto_continue": {"type": "boolean"}, "mode": {"type": "string"}}},
        "Status": {"type": "object", "properties": {"pipeline_id": {"type": "string"}, "status": obj("PipelineStatus")}},
        "ReportStatus": {"type": "object", "properties": {"pipeline_id": {"type": "string"}, "status": obj("PipelineStatus"),
            "report": {"oneOf": [obj("Report"), {"type": "null"}]}, "ready": {"type": "boolean"},
            "auto_continue": {"type": "boolean"}, "can_continue": {"type": "boolean"}}},
        "Report": {"type": "object", "properties": {"summary": {"type": "string"}, "findings": {"type": "array", "items": {"type": "string"}},
            "complexity": {"type": "number"}, "partial": {"type": "boolean"}}},
        "Event": {"type": "object", "required": ["type", "seq", "ts", "data"], "properties": {
            "type": {"type": "string", "enum": ["status_changed", "orchestration_started", "agent_spawned", "agent_message", "gamma_spawned",
                "proposal_created", "vote_cast", "consensus_reached", "llm_call", "agent_revoked", "handoff_created",
                "checkpoint_created", "error", "orchestration_complete", "resumed"]},
            "seq": {"type": "integer", "description": "per pipeline, gap-free, from 1"}, "ts": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "required": ["pipeline_id"], "properties": {"pipeline_id": {"type": "string"}}}}},
        "Logs": {"type": "object", "properties": {"pipeline_id": {"type": "string"}, "events": {"type": "array", "items": obj("Event")},
            "next_after": {"type": "integer"}, "has_more": {"type": "boolean"}}},
        "Agent": {"type": "object", "properties": {"agent_id": {"type": "string"}, "role": {"type": "string"},
            "state": {"type": "string", "enum": ["RUNNING", "DONE", "FAILED", "REVOKED", "CANCELLED"]},
            "tokens_used": {"type": "integer"}, "errors": {"type": "integer"}, "reason": {"type": "string"}}},
        "Usage": {"type": "object", "properties": {"calls": {"type": "integer"}, "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"}, "cost_usd": {"type": "number"}}},
        "Gamma": {"type": ["object", "null"], "properties": {"reason": {"type": "string", "enum": ["STUCK", "CONFLICT", "COMPLEXITY"]},
            "spawned_at": {"type": "string", "format": "date-time"}}},
        "PipelineRecord": {"type": "object", "properties": {"id": {"type": "string"}, "objective": {"type": "string"}, "status": obj("PipelineStatus"),
            "history": {"type": "array", "items": {"type": "array", "prefixItems": [obj("PipelineStatus"), {"type": "string", "format": "date-time"}]}},
            "auto_continue": {"type": "boolean"}, "mode": {"type": "string"}, "model": {"type": "string"}, "timeout_secs": {"type": "integer"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}, "orchestration_started_at": {"type": ["string", "null"]},
            "report": {"oneOf": [obj("Report"), {"type": "null"}]}, "agents": {"type": "array", "items": obj("Agent")}, "gamma": obj("Gamma"),
            "usage": obj("Usage"), "results": {}, "failure": {"type": ["string", "null"]}, "last_seq": {"type": "integer"}}},
        "Orchestration": {"type": "object", "properties": {"pipeline_id": {"type": "string"}, "status": obj("PipelineStatus"),
            "mode": {"type": "string"}, "model": {"type": "string"}, "timeout_secs": {"type": "integer"},
            "orchestration_started_at": {"type": ["string", "null"]}, "agents": {"type": "array", "items": obj("Agent")}, "gamma": obj("Gamma"),
            "blackboard": {"type": "object", "properties": {"proposals": {"type": "array", "items": {"type": "object"}},
                "summary": {"type": "object"}, "consensus": {"type": ["object", "null"]}}},
            "usage": obj("Usage"), "results": {"description": "results, or partial results with a partial_report"},
            "partial": {"type": "boolean"}, "failure": {"type": ["string", "null"]}}},
        "PipelineList": {"type": "object", "properties": {"pipelines": {"type": "array", "items": {"type": "object", "properties": {
                "pipeline_id": {"type": "string"}, "objective": {"type": "string"}, "status": obj("PipelineStatus"), "history": {"type": "array"},
                "auto_continue": {"type": "boolean"}, "mode": {"type": "string"}, "model": {"type": "string"}, "created_at": {"type": "string"},
                "updated_at": {"type": "string"}, "agents": {"type": "integer"}, "gamma": {"type": ["string", "null"]},
                "tokens": {"type": "integer"}, "cost_usd": {"type": "number"}, "failure": {"type": ["string", "null"]}}}},
            "total": {"type": "integer"}, "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "limit": {"type": "integer"}, "offset": {"type": "integer"}}},
    });
    json!({
        "openapi": "3.1.0",
        "info": {"title": "governance", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Governed multi-agent LLM pipelines: spawn, report, continue, observe, stop."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}
