use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::llm::{ChatMessage, LlmClient, LlmRequest, Purpose, RequestMeta};
use crate::parse::response_format_for;
use crate::{AgentId, LocalLlm, PipelineId};

const PURPOSES: [(Purpose, &str, &str); 5] = [
    (Purpose::Report, "report", "complexity"),
    (Purpose::Propose, "proposal", "title"),
    (Purpose::Evaluate, "evaluation", "approve"),
    (Purpose::Synthesize, "solution", "solution"),
    (Purpose::Mediate, "mediation", "subtasks"),
];

fn schema_for(purpose: Purpose) -> (String, Value) {
    match response_format_for(purpose) {
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => {
            assert!(strict, "{purpose:?} asks strictly");
            (name, (*schema).clone())
        }
        other => panic!("{purpose:?} asks for {other:?}, not a schema"),
    }
}

#[test]
fn every_purpose_asks_for_a_valid_strict_schema_of_its_answer_type() {
    for (purpose, name, property) in PURPOSES {
        let (got_name, schema) = schema_for(purpose);
        assert_eq!(got_name, name);
        assert!(
            got_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        check_strict(&schema).unwrap_or_else(|e| panic!("{purpose:?}: {e}\n{schema:#}"));
        assert!(
            schema["properties"].get(property).is_some(),
            "{purpose:?} has {property}: {schema:#}"
        );
        let text = schema.to_string();
        for dropped in ["\"format\"", "\"$schema\"", "\"minimum\"", "$ref", "$defs"] {
            assert!(
                !text.contains(dropped),
                "{purpose:?}: {dropped} left in {text}"
            );
        }
    }
    assert_eq!(
        response_format_for(Purpose::Other),
        ResponseFormat::JsonObject
    );
}

#[test]
fn an_optional_field_becomes_required_and_nullable() {
    let (_, schema) = schema_for(Purpose::Evaluate);
    assert_eq!(
        schema["properties"]["proposal_id"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(schema["additionalProperties"], json!(false));
    conforms(
        &schema,
        &json!({"proposal_id": null, "approve": true, "score": 0.5, "rationale": "ok"}),
    )
    .unwrap();
    let missing = conforms(
        &schema,
        &json!({"approve": true, "score": 0.5, "rationale": "ok"}),
    );
    assert!(missing.unwrap_err().contains("proposal_id"));
    let extra = conforms(
        &schema,
        &json!({"proposal_id": "p", "approve": true, "score": 0.5, "rationale": "ok", "x": 1}),
    );
    assert!(extra.unwrap_err().contains("\"x\""));
    let wrong = conforms(
        &schema,
        &json!({"proposal_id": "p", "approve": "yes", "score": 0.5, "rationale": "ok"}),
    );
    assert!(wrong.unwrap_err().contains("/approve"));
}

/// The table of transformations: schemars-style input → strict output (or the error).
#[test]
fn strict_schema_rewrites_refs_optionals_and_keywords() {
    let input = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Outer",
        "type": "object",
        "properties": {
            "n": {"type": "integer", "format": "uint32", "minimum": 0},
            "inner": {"$ref": "#/$defs/Inner", "description": "nested"},
            "tag": {"oneOf": [{"const": "a"}, {"const": "b"}], "default": "a"},
            "list": {"type": "array", "items": {"type": "number", "format": "double"}, "maxItems": 3}
        },
        "required": ["n", "inner"],
        "$defs": {
            "Inner": {"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}
        }
    });
    let out = strict_schema(&input).unwrap();
    assert_eq!(
        out,
        json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "inner": {
                    "type": "object",
                    "description": "nested",
                    "properties": {"x": {"type": ["string", "null"]}},
                    "required": ["x"],
                    "additionalProperties": false
                },
                "tag": {"anyOf": [{"const": "a"}, {"const": "b"}, {"type": "null"}]},
                "list": {"type": ["array", "null"], "items": {"type": "number"}}
            },
            "required": ["inner", "list", "n", "tag"],
            "additionalProperties": false
        })
    );
    for (bad, why) in [
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            "map",
        ),
        (json!({"type": "string"}), "root"),
        (
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}),
            "names no definition",
        ),
        (
            json!({"type": "object", "properties": {"me": {"$ref": "#/$defs/R"}},
                   "$defs": {"R": {"type": "object", "properties": {"me": {"$ref": "#/$defs/R"}}}}}),
            "recursive",
        ),
        (
            json!({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"type": "null"}]}}}),
            "allOf",
        ),
    ] {
        let e = strict_schema(&bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn check_strict_names_the_broken_rule() {
    for (schema, why) in [
        (
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": [], "additionalProperties": false}),
            "not required",
        ),
        (
            json!({"type": "object", "properties": {}, "required": []}),
            "additionalProperties",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "format": "date"}}, "required": ["a"], "additionalProperties": false}),
            "format",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array"}}, "required": ["a"], "additionalProperties": false}),
            "without items",
        ),
    ] {
        let e = check_strict(&schema).unwrap_err();
        assert!(e.contains(why), "{schema}: {e}");
    }
}

fn request(purpose: Purpose, attempt: u32) -> LlmRequest {
    let user = format!(
        "{}\nProposal id: p-1\n",
        crate::prompt::quote_untrusted("OBJECTIVE", "Design a cache")
    );
    LlmRequest {
        model: None,
        fallback_models: Vec::new(),
        messages: vec![ChatMessage::user(user)].into(),
        max_tokens: 256,
        temperature: 0.0,
        response_format: response_format_for(purpose),
        meta: RequestMeta {
            pipeline_id: PipelineId::new("p").unwrap(),
            agent_id: AgentId::new("BETA").unwrap(),
            purpose,
            attempt,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever purpose and attempt: each purpose's schema is strict, and the local LLM's
    /// answer to it follows it (so pipelines on the local LLM keep working).
    #[test]
    fn local_llm_answers_in_the_shape_of_every_purpose(i in 0usize..5, attempt in 0u32..20) {
        let (purpose, _, _) = PURPOSES[i];
        let (_, schema) = schema_for(purpose);
        prop_assert!(check_strict(&schema).is_ok());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let resp = rt.block_on(LocalLlm::default().complete(&request(purpose, attempt))).unwrap();
        let v: Value = serde_json::from_str(&resp.content).unwrap();
        prop_assert!(conforms(&schema, &v).is_ok(), "{:?}: {:?} for {}", purpose, conforms(&schema, &v), v);
    }
}
