//! Answers in the shape asked for: whole pipelines in `openrouter` mode against a mock
//! OpenRouter over a real socket. Every purpose asks for its strict JSON schema; a provider
//! that refuses `json_schema` (and then `json_object`) gets the same call in a weaker format,
//! remembered per model; a 400 about anything else is not retried; malformed answers still
//! count against the error budget.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATH, config, request};
use governance_core::parse::response_format_for;
use governance_core::{
    AgentState, Config, Error, Event, EventKind, Governance, LlmClient, PipelineRecord,
    PipelineStatus, Purpose, ResponseFormat, ResponseFormatKind, RoleSettings, RoleSettingsMap,
    SpawnRequest,
};
use governance_openrouter::OpenRouterClient;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const OBJECTIVE: &str = "Design a caching strategy for the catalogue service";

/// (a line only that purpose's prompt has, the purpose, its schema name, a property only its
/// schema has)
const PURPOSES: [(&str, Purpose, &str, &str); 5] = [
    (
        "Your role: REPORTER",
        Purpose::Report,
        "report",
        "complexity",
    ),
    (
        "Decompose the objective",
        Purpose::Mediate,
        "mediation",
        "subtasks",
    ),
    (
        "Build the final solution",
        Purpose::Synthesize,
        "solution",
        "solution",
    ),
    (
        "Evaluate the proposal",
        Purpose::Evaluate,
        "evaluation",
        "approve",
    ),
    (
        "Propose one concrete approach",
        Purpose::Propose,
        "proposal",
        "title",
    ),
];

fn purpose_of(body: &Value) -> Purpose {
    let text = body["messages"].to_string();
    PURPOSES
        .iter()
        .find(|(line, ..)| text.contains(line))
        .map_or(Purpose::Other, |p| p.1)
}

fn format_type(body: &Value) -> &str {
    body["response_format"]["type"].as_str().unwrap_or("text")
}

/// A model's answer for a purpose; `complexity` decides whether GAMMA is called to decompose.
fn answer(purpose: Purpose, complexity: f64, text_mode: bool) -> String {
    match purpose {
        Purpose::Report => json!({"summary": "Read-heavy catalogue.", "findings": ["95% reads"],
            "complexity": complexity})
        .to_string(),
        Purpose::Mediate => json!({"subtasks": ["scope", "design"], "guidance": "split it"}).to_string(),
        Purpose::Synthesize => json!({"solution": "Cache-aside in Redis with TTLs."}).to_string(),
        // without a format, the way real models answer: prose the lenient parser reads
        Purpose::Evaluate if text_mode => "I approve this proposal: it fits a read-heavy catalogue.".to_owned(),
        Purpose::Evaluate => json!({"proposal_id": null, "approve": true, "score": 0.9,
            "rationale": "fits"})
        .to_string(),
        _ if text_mode => "Here it is:\n```json\n{\"title\": \"Cache-aside\", \"content\": \"Cache entities in Redis with TTLs.\"}\n```".to_owned(),
        _ => json!({"title": "Cache-aside", "content": "Cache entities in Redis with TTLs."}).to_string(),
    }
}

fn completion(model: &Value, content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "gen-1", "provider": "Mock", "model": model, "object": "chat.completion",
        "created": 1_760_000_000,
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "cost": 0.001}
    }))
}

fn refusal(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"error": {"code": status, "message": message}}))
}

/// A mock model: refuses the formats in `refused` the way providers do, answers the rest by
/// purpose; `garbage_model`'s answers are schema-violating JSON.
struct Model {
    refused: Vec<&'static str>,
    complexity: f64,
    garbage_model: Option<&'static str>,
}

impl Respond for Model {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let format = format_type(&body);
        if self.refused.contains(&format) {
            return refusal(
                400,
                &format!(
                    "Provider returned error: response_format {format} is not supported by this model"
                ),
            );
        }
        if self.garbage_model.is_some_and(|m| body["model"] == m) {
            return completion(&body["model"], r#"{"nonsense": 1, "more": [true]}"#);
        }
        let purpose = purpose_of(&body);
        let answer = completion(
            &body["model"],
            &answer(purpose, self.complexity, format == "text"),
        );
        if self.complexity > 0.9 && purpose == Purpose::Propose {
            // GAMMA decomposes alongside ALPHA and BETA: held back, the first proposal cannot
            // let the pipeline end before GAMMA's call has gone out (it did once in a loaded
            // run, and the mediate purpose had no request to check)
            return answer.set_delay(Duration::from_millis(300));
        }
        answer
    }
}

async fn serve(model: Model) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(model)
        .mount(&server)
        .await;
    server
}

fn fast_config() -> Config {
    let mut c = Config::default();
    c.agent_poll_interval = Duration::from_millis(50);
    c
}

async fn run(
    server: &MockServer,
    roles: RoleSettingsMap,
) -> (PipelineRecord, Vec<Event>, Vec<Value>) {
    let gov = Governance::builder()
        .config(fast_config())
        .llm(
            "openrouter",
            Arc::new(OpenRouterClient::new(config(server)).unwrap()),
        )
        .default_mode("openrouter")
        .role_settings(roles)
        .build()
        .unwrap();
    let id = gov.spawn(SpawnRequest::new(OBJECTIVE)).await.unwrap();
    let rec = gov.wait(&id).await.unwrap();
    let events = gov.events(&id, 0, usize::MAX).await.unwrap();
    gov.shutdown(Duration::from_secs(10)).await;
    let bodies = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    (rec, events, bodies)
}

/// (format used, format fallen back from) of every successful `llm_call` event.
fn formats(events: &[Event]) -> Vec<(Option<ResponseFormatKind>, Option<ResponseFormatKind>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LlmCall {
                error: None,
                response_format,
                format_fallback_from,
                ..
            } => Some((*response_format, *format_fallback_from)),
            _ => None,
        })
        .collect()
}

fn count(bodies: &[Value], format: &str) -> usize {
    bodies.iter().filter(|b| format_type(b) == format).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_purpose_asks_for_its_own_strict_schema() {
    // complexity above the threshold: GAMMA is called to decompose (the mediate purpose)
    let server = serve(Model {
        refused: vec![],
        complexity: 0.95,
        garbage_model: None,
    })
    .await;
    let (rec, events, bodies) = run(&server, RoleSettingsMap::new()).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    for (_, purpose, name, property) in PURPOSES {
        let of: Vec<&Value> = bodies.iter().filter(|b| purpose_of(b) == purpose).collect();
        assert!(!of.is_empty(), "no {purpose:?} request was sent");
        let ResponseFormat::JsonSchema { schema, .. } = response_format_for(purpose) else {
            panic!("{purpose:?} has no schema");
        };
        for b in of {
            let rf = &b["response_format"];
            assert_eq!(rf["type"], "json_schema", "{purpose:?}: {rf}");
            assert_eq!(rf["json_schema"]["strict"], true);
            assert_eq!(rf["json_schema"]["name"], name);
            assert!(
                rf["json_schema"]["schema"]["properties"]
                    .get(property)
                    .is_some(),
                "{rf}"
            );
            assert_eq!(
                rf["json_schema"]["schema"], *schema,
                "the schema derived from the type"
            );
            assert_ne!(
                b["provider"]["require_parameters"], true,
                "no require_parameters: fall back instead"
            );
        }
    }
    let used = formats(&events);
    assert!(!used.is_empty());
    assert!(
        used.iter()
            .all(|f| *f == (Some(ResponseFormatKind::JsonSchema), None)),
        "{used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_schema_falls_back_to_json_mode_once_per_model() {
    let server = serve(Model {
        refused: vec!["json_schema"],
        complexity: 0.3,
        garbage_model: None,
    })
    .await;
    let (rec, events, bodies) = run(&server, RoleSettingsMap::new()).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    // the first call (the report) asked with the schema once; every later call of the same
    // model went straight to JSON mode
    assert_eq!(count(&bodies, "json_schema"), 1, "{bodies:#?}");
    assert_eq!(purpose_of(&bodies[0]), Purpose::Report);
    assert_eq!(format_type(&bodies[1]), "json_object");
    assert_eq!(
        purpose_of(&bodies[1]),
        Purpose::Report,
        "the same call, retried"
    );
    let used = formats(&events);
    // one send per answered call (a call abandoned at the end may have been sent unrecorded)
    assert!(count(&bodies, "json_object") >= used.len());
    assert!(
        used.iter().all(|f| *f
            == (
                Some(ResponseFormatKind::JsonObject),
                Some(ResponseFormatKind::JsonSchema)
            )),
        "{used:?}"
    );
    // the refused send is no failed call: no llm_call with an error, no error event
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::LlmCall { error: Some(_), .. }))
    );
    assert!(
        !events.iter().any(|e| e.kind.type_name() == "error"),
        "{events:#?}"
    );
    // as the API shows the ledger
    let ledger = serde_json::to_value(&events).unwrap();
    let call = ledger
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "llm_call")
        .expect("an llm_call");
    assert_eq!(call["data"]["response_format"], "json_object", "{call}");
    assert_eq!(
        call["data"]["format_fallback_from"], "json_schema",
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_refused_too_falls_back_to_text_and_lenient_parsing() {
    let server = serve(Model {
        refused: vec!["json_schema", "json_object"],
        complexity: 0.3,
        garbage_model: None,
    })
    .await;
    let (rec, events, bodies) = run(&server, RoleSettingsMap::new()).await;
    assert_eq!(rec.status, PipelineStatus::Completed, "{:?}", rec.failure);
    assert_eq!(count(&bodies, "json_schema"), 1);
    assert_eq!(count(&bodies, "json_object"), 1);
    assert!(
        bodies[2..]
            .iter()
            .all(|b| b.get("response_format").is_none()),
        "text: no format sent"
    );
    let used = formats(&events);
    assert!(count(&bodies, "text") >= used.len());
    assert!(
        used.iter().all(|f| *f
            == (
                Some(ResponseFormatKind::Text),
                Some(ResponseFormatKind::JsonSchema)
            )),
        "{used:?}"
    );
    let results = rec.results.expect("results");
    assert!(
        results.solution.is_some(),
        "prose and fenced answers parsed leniently"
    );
}

#[tokio::test]
async fn a_400_about_something_else_is_not_a_format_fallback() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(refusal(
            400,
            "This endpoint's maximum context length is 8192 tokens",
        ))
        .mount(&server)
        .await;
    let client = OpenRouterClient::new(config(&server)).unwrap();
    let mut req = request();
    req.response_format = response_format_for(Purpose::Propose);
    let err = client.complete(&req).await.unwrap_err();
    let Error::Llm(f) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(f.status, Some(400));
    assert!(!f.retryable);
    assert!(f.message.contains("maximum context length"), "{err}");
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1, "sent once, not retried in another format");
    // and the model's format was not lowered: the next call asks with the schema again
    let _ = client.complete(&req).await.unwrap_err();
    let sent = server.received_requests().await.unwrap();
    let last: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(format_type(&last), "json_schema");
}

#[tokio::test]
async fn a_streaming_call_asks_the_same_way_and_falls_back_the_same_way() {
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    struct Sse(Arc<Mutex<Vec<Value>>>);
    impl Respond for Sse {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            self.0.lock().unwrap().push(body.clone());
            if format_type(&body) == "json_schema" {
                return refusal(422, "json_schema: structured outputs are not supported");
            }
            let chunk = json!({"id": "g", "model": "m", "choices": [{"index": 0,
                "delta": {"content": "{\"title\": \"t\", \"content\": \"c\"}"}, "finish_reason": "stop"}]});
            ResponseTemplate::new(200).set_body_raw(
                format!("data: {chunk}\n\ndata: [DONE]\n\n"),
                "text/event-stream",
            )
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .respond_with(Sse(Arc::clone(&seen)))
        .mount(&server)
        .await;
    let client = OpenRouterClient::new(config(&server)).unwrap();
    let mut req = request();
    req.response_format = response_format_for(Purpose::Propose);
    let deltas = Mutex::new(Vec::new());
    let sink = |d: &str| deltas.lock().unwrap().push(d.to_owned());
    let r = client.complete_streaming(&req, &sink).await.unwrap();
    assert_eq!(r.format_fallback, Some(ResponseFormatKind::JsonObject));
    assert_eq!(
        deltas.lock().unwrap().len(),
        1,
        "the refused send streamed nothing"
    );
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["stream"], true);
    assert_eq!(
        bodies[0]["response_format"]["json_schema"]["name"],
        "proposal"
    );
    assert_eq!(bodies[0]["response_format"]["json_schema"]["strict"], true);
    assert_eq!(format_type(&bodies[1]), "json_object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_under_a_schema_count_against_the_error_budget() {
    const BAD: &str = "bad/model";
    let server = serve(Model {
        refused: vec![],
        complexity: 0.3,
        garbage_model: Some(BAD),
    })
    .await;
    let roles = RoleSettingsMap::from([(
        "ALPHA".to_owned(),
        RoleSettings {
            model: Some(BAD.into()),
            ..RoleSettings::default()
        },
    )]);
    let (rec, events, bodies) = run(&server, roles).await;
    let alpha = rec
        .agents
        .iter()
        .find(|a| a.agent_id == "ALPHA")
        .expect("alpha");
    assert_eq!(alpha.state, AgentState::Revoked, "{alpha:?}");
    assert!(
        alpha
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("max_same_error_repeats")),
        "{alpha:?}"
    );
    let errors = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Error { agent_id: Some(a), .. } if a.as_str() == "ALPHA"))
        .count();
    assert!(
        errors > Config::default().error_budget.max_same_error_repeats as usize,
        "{errors}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind.type_name() == "agent_revoked")
            .count(),
        1
    );
    // the garbage came under the schema, and was never "fixed" by a fallback
    let alpha_bodies: Vec<&Value> = bodies.iter().filter(|b| b["model"] == BAD).collect();
    assert!(!alpha_bodies.is_empty());
    assert!(alpha_bodies.iter().all(|b| format_type(b) == "json_schema"));
    assert_eq!(
        rec.status,
        PipelineStatus::Completed,
        "BETA took over: {:?}",
        rec.failure
    );
}
