//! The analysts' documentation, run against real audit objects: known traffic
//! goes through a gateway with a local audit sink (experiments with overrides,
//! flag rules and hashing, a fallback variant, a shadow variant, streams in
//! both dialects, provider errors and refusals), the gateway shuts down
//! (which waits for the shadow calls, drains the spool and stores every
//! object), and then `tests/analytics` (pytest with
//! DuckDB, from `.venv-test`) runs every DuckDB query in docs/audit-schema.md
//! and compares its answers with the traffic described here.
//!
//! The expectation handed to Python is one entry per audit record this test
//! expects, with what the test knows independently of the audit pipeline: the
//! request it sent, the variant it forced (or the one the response headers
//! named), the outcome it provoked, and the token counts the gateway's own
//! exchange reports carried. A shadow call's record is expected beside the
//! served request it copies; its request id (the gateway's own) and its token
//! counts come from the gateway's exchange report for that shadow call.
//!
//! Feedback goes to the feedback table: after the traffic, `POST /v1/feedback`
//! events (boolean and float metrics, a value posted twice, one for a request
//! id nobody made, one for a request outside any experiment) are expected
//! beside the request records, and one refused event (an undeclared metric)
//! leaves a request record of its own (`endpoint = "feedback"`).
//!
//! Set `PROMPTGATE_AUDIT_KEEP=<dir>` to keep a copy of the objects and the
//! expectation for looking at them with DuckDB by hand.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use promptgate::exchange::{FinishedExchange, Outcome};
use promptgate::simulator::{Fault, SimConfig, Simulator};
use serde_json::{Value, json};
use support::{PROVIDER_KEY, TestClient, TestGateway, client, send};

/// USD per million tokens (input, output), by the model sent upstream.
/// `demo-x` has no price on purpose: its records must carry a null cost.
const PRICES: &[(&str, f64, f64)] = &[
    ("demo-a", 1.0, 2.0),
    ("demo-b", 3.0, 15.0),
    ("demo-c", 0.5, 1.5),
    ("demo-d", 0.25, 1.25),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4o-mini", 0.15, 0.6),
];

const OPENAI_CHAT: &str = "/v1/chat/completions";
const OPENAI_RESPONSES: &str = "/v1/responses";
const ANTHROPIC_MESSAGES: &str = "/v1/messages";
const FEEDBACK: &str = "/v1/feedback";

fn config(sim: &Simulator) -> String {
    let prices: String = PRICES
        .iter()
        .map(|(model, input, output)| {
            format!(
                "[prices.\"{model}\"]\ninput_per_million = {input}\noutput_per_million = {output}\n"
            )
        })
        .collect();
    format!(
        r#"
[server]
shutdown_grace_ms = 10000

[auth]
open = true

[providers.demo]
kind = "demo"

[providers.sim]
kind = "openai"
base_url = "{sim}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0
first_byte_timeout_ms = 2000

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
max_retries = 0
connect_timeout_ms = 500

[[routes]]
models = ["demo-*"]
providers = ["demo"]

[[routes]]
models = ["gpt-*"]
providers = ["sim"]

[[routes]]
models = ["dead-model"]
providers = ["dead"]

[experiments.greeting]
unit_key = {{ header = "x-user-id" }}
override_clients = ["*"]

[[experiments.greeting.variants]]
name = "control"
weight = 50
version = "v1"
model = "demo-a"
providers = ["demo"]
system = "Be brief."

[[experiments.greeting.variants]]
name = "friendly"
weight = 50
version = "v2"
model = "demo-b"
providers = ["demo"]
system = "Be warm and friendly."

[[experiments.greeting.rules]]
name = "beta"
variant = "friendly"
attribute = "header:x-beta"
equals = "yes"

[experiments.summarize]
unit_key = {{ header = "x-user-id" }}
override_clients = ["*"]
fallback_variant = "backup"

[[experiments.summarize.variants]]
name = "primary"
weight = 1
version = "p1"
model = "gpt-4o"
providers = ["sim"]

[[experiments.summarize.variants]]
name = "backup"
weight = 0
version = "b1"
model = "demo-c"
providers = ["demo"]

[[experiments.summarize.variants]]
name = "concise"
weight = 0
version = "c1"
model = "demo-d"
providers = ["demo"]
system = "Summarise in three short sentences."

[experiments.summarize.shadow]
variants = ["concise"]
sample_percent = 100

[experiments.broken]
unit_key = {{ header = "x-user-id" }}

[[experiments.broken.variants]]
name = "only"
weight = 1
version = "o1"
model = "gone-model"
providers = ["dead"]

[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 200
instance = "gw-test"
unit_key_secret_file = "{{dir}}/provider.key"
redact_json_paths = ["request.user"]
redaction = "hash"

[feedback.metrics]
thumbs_up = "boolean"
rating = "float"

[tags.keys.doc_type]
[tags.keys.channel]
values = ["email", "web"]

{prices}"#,
        sim = sim.openai_base_url(),
    )
}

/// What the test expects of one audit record.
#[derive(Clone)]
struct Expected {
    request_id: String,
    role: &'static str,
    /// For a shadow call: the request id of the served request it copies.
    shadow_of: Option<String>,
    experiment: Option<&'static str>,
    assigned_variant: Option<String>,
    served_variant: Option<String>,
    assignment_reason: Option<String>,
    /// The raw unit key (only in this test's expectation, never in a record).
    unit_key: Option<String>,
    sticky: Option<bool>,
    endpoint: Option<&'static str>,
    dialect: &'static str,
    model: Option<&'static str>,
    upstream_model: Option<&'static str>,
    provider: Option<&'static str>,
    stream: bool,
    status: u16,
    outcome: &'static str,
    error_class: Option<&'static str>,
    /// The `tags` object the record must hold (`null`: none).
    tags: Value,
}

impl Expected {
    fn served(id: &str, path: &'static str, model: &'static str, stream: bool) -> Expected {
        let (endpoint, dialect) = match path {
            OPENAI_CHAT => ("chat_completions", "openai"),
            OPENAI_RESPONSES => ("responses", "openai"),
            ANTHROPIC_MESSAGES => ("messages", "anthropic"),
            FEEDBACK => ("feedback", "openai"),
            other => panic!("no endpoint label for {other}"),
        };
        Expected {
            request_id: id.to_owned(),
            role: "served",
            shadow_of: None,
            experiment: None,
            assigned_variant: None,
            served_variant: None,
            assignment_reason: None,
            unit_key: None,
            sticky: None,
            endpoint: Some(endpoint),
            dialect,
            model: Some(model),
            upstream_model: Some(model),
            provider: Some(provider_of(model)),
            stream,
            status: 200,
            outcome: "completed",
            error_class: None,
            tags: Value::Null,
        }
    }

    /// Assigned and served by `variant` of `experiment`, for the unit `unit`
    /// (`None`: no unit key sent, so the request id is the unit).
    fn in_experiment(
        mut self,
        experiment: &'static str,
        variant: &str,
        reason: &str,
        unit: Option<&str>,
    ) -> Expected {
        self.experiment = Some(experiment);
        self.assigned_variant = Some(variant.to_owned());
        self.served_variant = Some(variant.to_owned());
        self.assignment_reason = Some(reason.to_owned());
        self.unit_key = Some(unit.map_or_else(|| self.request_id.clone(), str::to_owned));
        self.sticky = Some(unit.is_some());
        // "?": assigned by hash, known once the response names it.
        self.upstream_model = (variant != "?").then(|| variant_model(experiment, variant));
        self.provider = Some(provider_of(self.upstream_model.unwrap_or("demo")));
        self
    }

    /// The record of the call to shadow `variant` beside this served one,
    /// which the gateway made under the request id `id`: it keeps the served
    /// request's experiment, assignment reason, unit and request fields, and
    /// names the shadow variant as both assigned and served.
    fn shadow(&self, variant: &str, id: &str) -> Expected {
        let experiment = self.experiment.expect("shadows belong to an experiment");
        let upstream_model = variant_model(experiment, variant);
        Expected {
            request_id: id.to_owned(),
            role: "shadow",
            shadow_of: Some(self.request_id.clone()),
            assigned_variant: Some(variant.to_owned()),
            served_variant: Some(variant.to_owned()),
            upstream_model: Some(upstream_model),
            provider: Some(provider_of(upstream_model)),
            status: 200,
            outcome: "completed",
            error_class: None,
            ..self.clone()
        }
    }

    fn refused(id: &str, path: &'static str, status: u16, class: &'static str) -> Expected {
        let mut expected = Expected::served(id, path, "unused", false);
        expected.model = None;
        expected.upstream_model = None;
        expected.provider = None;
        expected.status = status;
        expected.outcome = "refused";
        expected.error_class = Some(class);
        expected
    }

    fn json(&self, exchange: Option<&FinishedExchange>) -> Value {
        let (input, output) = exchange.map_or((None, None), |e| {
            (
                e.captured.usage.input_tokens,
                e.captured.usage.output_tokens,
            )
        });
        let price = self
            .upstream_model
            .and_then(|m| PRICES.iter().find(|(model, ..)| *model == m));
        let cost = match (price, input, output) {
            (Some(_), None, None) | (None, ..) => None,
            (Some((_, per_in, per_out)), input, output) => {
                let usd = input.unwrap_or(0) as f64 * per_in / 1e6
                    + output.unwrap_or(0) as f64 * per_out / 1e6;
                Some(usd)
            }
        };
        json!({
            "request_id": self.request_id,
            "role": self.role,
            "shadow_of": self.shadow_of,
            "experiment": self.experiment,
            "assigned_variant": self.assigned_variant,
            "served_variant": self.served_variant,
            "assignment_reason": self.assignment_reason,
            "unit_key": self.unit_key,
            "assignment_sticky": self.sticky,
            "endpoint": self.endpoint,
            "dialect": self.dialect,
            "model": self.model,
            "upstream_model": self.upstream_model,
            "provider": self.provider,
            "stream": self.stream,
            "status": self.status,
            "outcome": self.outcome,
            "error_class": self.error_class,
            "tags": self.tags,
            "input_tokens": input,
            "output_tokens": output,
            "cost_usd": cost,
        })
    }
}

fn provider_of(upstream_model: &str) -> &'static str {
    if upstream_model.starts_with("gpt-") {
        "sim"
    } else {
        "demo"
    }
}

fn variant_model(experiment: &str, variant: &str) -> &'static str {
    match (experiment, variant) {
        ("greeting", "control") => "demo-a",
        ("greeting", "friendly") => "demo-b",
        ("summarize", "primary") => "gpt-4o",
        ("summarize", "backup") => "demo-c",
        ("summarize", "concise") => "demo-d",
        ("broken", "only") => "gone-model",
        other => panic!("unknown variant {other:?}"),
    }
}

/// One request of the traffic, and the records it must leave.
struct Call {
    id: String,
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Queued at the simulator just before the request.
    fault: Option<Fault>,
    status: u16,
    records: Vec<Expected>,
    /// The shadow variants the gateway must call beside it (one record each).
    shadows: Vec<&'static str>,
}

impl Call {
    fn new(expected: Expected, path: &'static str, body: String) -> Call {
        Call {
            id: expected.request_id.clone(),
            method: Method::POST,
            path,
            headers: Vec::new(),
            body,
            fault: None,
            status: expected.status,
            shadows: shadows_of(&expected),
            records: vec![expected],
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sends `x-promptgate-tags: header`; every record of the call (its
    /// shadows' too) must carry `tags`.
    fn tagged(mut self, header: &str, tags: Value) -> Call {
        for record in &mut self.records {
            record.tags = tags.clone();
        }
        self.header("x-promptgate-tags", header)
    }
}

/// The shadow calls a request gets: summarize shadows `concise` on every
/// request it serves (sample_percent = 100), refusals get none.
fn shadows_of(expected: &Expected) -> Vec<&'static str> {
    match expected.experiment {
        Some("summarize") if expected.outcome != "refused" => vec!["concise"],
        _ => Vec::new(),
    }
}

fn chat(model: &str, text: &str, stream: Option<bool>) -> String {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if let Some(include_usage) = stream {
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    body.to_string()
}

fn messages(model: &str, text: &str, stream: bool) -> String {
    let mut body =
        json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]});
    if stream {
        body["stream"] = json!(true);
    }
    body.to_string()
}

/// The traffic, in groups sent with a pause between them, so each group is
/// in segments (objects) of its own. The first group holds only refusals
/// without experiment: with it first, guessing column types from the first
/// object alone loses every experiment value (a check in tests/analytics).
fn traffic() -> Vec<Vec<Call>> {
    vec![refusals(), greeting(), summarize(), plain()]
}

/// greeting: overrides, a flag rule and hashing, in both dialects and on
/// chat, responses and messages, streamed and not.
fn greeting() -> Vec<Call> {
    let mut calls = Vec::new();
    let greeting = |id: &str, path: &'static str, stream: bool, variant: &str| {
        Expected::served(id, path, "greeting", stream)
            .in_experiment("greeting", variant, "override", None)
    };
    // greeting/control, forced by the override header: JSON and streamed
    // (with usage), chat, responses and messages.
    for (n, path, stream) in [
        (1, OPENAI_CHAT, None),
        (2, OPENAI_CHAT, None),
        (3, OPENAI_CHAT, Some(true)),
        (4, OPENAI_CHAT, Some(true)),
        (5, ANTHROPIC_MESSAGES, None),
        (6, OPENAI_RESPONSES, None),
    ] {
        let id = format!("g-control-{n}");
        let expected = greeting(&id, path, stream.is_some(), "control");
        let body = match path {
            OPENAI_CHAT => chat("greeting", &format!("hello number {n}"), stream),
            ANTHROPIC_MESSAGES => messages("greeting", "hello from claude land", false),
            _ => json!({"model": "greeting", "input": "hello from responses"}).to_string(),
        };
        calls.push(Call::new(expected, path, body).header("x-promptgate-variant", "control"));
    }
    // greeting/friendly by override: one stream without usage (null tokens,
    // null cost) and one Anthropic stream.
    for (n, path, stream) in [
        (1, OPENAI_CHAT, None),
        (2, OPENAI_CHAT, None),
        (3, OPENAI_CHAT, Some(false)),
        (4, ANTHROPIC_MESSAGES, Some(true)),
    ] {
        let id = format!("g-friendly-{n}");
        let expected = greeting(&id, path, stream.is_some(), "friendly");
        let body = match path {
            OPENAI_CHAT => chat("greeting", &format!("a friendly hello {n}"), stream),
            _ => messages("greeting", "stream me a friendly hello", true),
        };
        calls.push(Call::new(expected, path, body).header("x-promptgate-variant", "friendly"));
    }
    // greeting/friendly by the flag rule `beta`, for three sticky users.
    for n in 1..=3 {
        let id = format!("g-beta-{n}");
        let user = format!("beta-user-{n}");
        let expected = Expected::served(&id, OPENAI_CHAT, "greeting", false).in_experiment(
            "greeting",
            "friendly",
            "flag:beta",
            Some(&user),
        );
        calls.push(
            Call::new(expected, OPENAI_CHAT, chat("greeting", "beta hello", None))
                .header("x-beta", "yes")
                .header("x-user-id", &user),
        );
    }
    // greeting by hash: the variant is the gateway's to choose (filled in
    // from the response headers); one user twice, to count units.
    for (n, user) in [
        (1, "user-1"),
        (2, "user-2"),
        (3, "user-3"),
        (4, "user-4"),
        (5, "user-5"),
        (6, "user-6"),
        (7, "user-7"),
        (8, "user-1"),
    ] {
        let id = format!("g-hash-{n}");
        let expected = Expected::served(&id, OPENAI_CHAT, "greeting", false).in_experiment(
            "greeting",
            "?",
            "hash",
            Some(user),
        );
        let body = json!({"model": "greeting", "messages": [{"role": "user", "content": "hash me"}], "user": format!("{user}@example.com")});
        calls.push(Call::new(expected, OPENAI_CHAT, body.to_string()).header("x-user-id", user));
    }
    calls
}

/// summarize: a variant on the simulator with a fallback variant on the
/// demo, and a shadow variant on the demo beside every request it serves
/// (fallbacks included: the shadow pairs with the served record, not with the
/// abandoned attempt); broken: an experiment whose only provider is
/// unreachable.
fn summarize() -> Vec<Call> {
    let mut calls = Vec::new();
    // summarize/primary: healthy, through the simulator.
    for n in 1..=3 {
        let id = format!("s-primary-{n}");
        let expected = Expected::served(&id, OPENAI_CHAT, "summarize", false).in_experiment(
            "summarize",
            "primary",
            "override",
            None,
        );
        // Two of three tagged: their shadows carry the same tags.
        let call = Call::new(
            expected,
            OPENAI_CHAT,
            chat("summarize", "summarise this text for me please", None),
        )
        .header("x-promptgate-variant", "primary");
        calls.push(match n {
            3 => call,
            _ => call.tagged(
                "doc_type=invoice, channel=email",
                json!({"channel": "email", "doc_type": "invoice"}),
            ),
        });
    }
    // summarize/primary answers 503: an abandoned attempt, then the
    // fallback variant serves (two records, one request id).
    for n in 1..=2 {
        let id = format!("s-fallback-{n}");
        let served = Expected::served(&id, OPENAI_CHAT, "summarize", false).in_experiment(
            "summarize",
            "primary",
            "override",
            None,
        );
        let mut abandoned = served.clone();
        abandoned.status = 503;
        abandoned.outcome = "abandoned";
        abandoned.error_class = Some("provider_error");
        let mut served = served;
        served.served_variant = Some("backup".into());
        served.upstream_model = Some("demo-c");
        served.provider = Some("demo");
        let mut call = Call::new(
            served,
            OPENAI_CHAT,
            chat("summarize", "summarise this, primary will fail", None),
        )
        .header("x-promptgate-variant", "primary");
        call.records.insert(0, abandoned);
        call.fault = Some(Fault::Status {
            status: 503,
            retry_after: None,
        });
        calls.push(call);
    }
    // summarize/primary's connection drops before any answer: the fallback
    // serves, and no abandoned record exists (nothing was answered).
    {
        let mut served = Expected::served("s-fallback-3", OPENAI_CHAT, "summarize", false)
            .in_experiment("summarize", "primary", "override", None);
        served.served_variant = Some("backup".into());
        served.upstream_model = Some("demo-c");
        served.provider = Some("demo");
        let mut call = Call::new(
            served,
            OPENAI_CHAT,
            chat("summarize", "summarise this, the line drops", None),
        )
        .header("x-promptgate-variant", "primary");
        call.fault = Some(Fault::Close);
        calls.push(call);
    }
    let backup = Expected::served("s-backup-1", OPENAI_CHAT, "summarize", false).in_experiment(
        "summarize",
        "backup",
        "override",
        None,
    );
    calls.push(
        Call::new(
            backup,
            OPENAI_CHAT,
            chat("summarize", "backup directly", None),
        )
        .header("x-promptgate-variant", "backup"),
    );
    // broken/only: its only provider is unreachable and there is no
    // fallback, so the gateway refuses, with the experiment tag.
    {
        let mut refused = Expected::refused("b-refused-1", OPENAI_CHAT, 502, "upstream")
            .in_experiment("broken", "only", "hash", None);
        refused.model = Some("broken");
        refused.upstream_model = None;
        refused.provider = Some("dead");
        calls.push(Call::new(
            refused,
            OPENAI_CHAT,
            chat("broken", "this cannot work", None),
        ));
    }
    calls
}

/// No experiment: the demo (unpriced model) and the simulator (priced), one
/// answer being the provider's own 500, passed through.
fn plain() -> Vec<Call> {
    let mut calls = Vec::new();
    calls.push(
        Call::new(
            Expected::served("p-demo-1", OPENAI_CHAT, "demo-x", false),
            OPENAI_CHAT,
            chat("demo-x", "plain request", None),
        )
        .tagged(
            " channel = web ,doc_type=receipt",
            json!({"channel": "web", "doc_type": "receipt"}),
        ),
    );
    calls.push(Call::new(
        Expected::served("p-demo-2", OPENAI_CHAT, "demo-x", true),
        OPENAI_CHAT,
        chat("demo-x", "plain streamed request", Some(true)),
    ));
    calls.push(Call::new(
        Expected::served("p-sim-1", OPENAI_CHAT, "gpt-4o-mini", false),
        OPENAI_CHAT,
        chat("gpt-4o-mini", "a priced plain request", None),
    ));
    {
        let mut failed = Expected::served("p-sim-2", OPENAI_CHAT, "gpt-4o-mini", false);
        failed.status = 500;
        failed.error_class = Some("provider_error");
        let mut call = Call::new(
            failed,
            OPENAI_CHAT,
            chat("gpt-4o-mini", "the provider fails this one", None),
        );
        call.fault = Some(Fault::Status {
            status: 500,
            retry_after: None,
        });
        calls.push(call);
    }
    calls
}

/// Refusals without experiment: the gateway answers itself, before any
/// provider does.
fn refusals() -> Vec<Call> {
    let mut calls = Vec::new();
    calls.push(Call::new(
        Expected::refused("x-json-1", OPENAI_CHAT, 400, "bad_request"),
        OPENAI_CHAT,
        r#"{"model": "demo-x", "messages": ["#.to_owned(),
    ));
    calls.push(Call::new(
        Expected::refused("x-json-2", ANTHROPIC_MESSAGES, 400, "bad_request"),
        ANTHROPIC_MESSAGES,
        "this is not JSON".to_owned(),
    ));
    {
        let mut unknown = Expected::refused("x-model-1", OPENAI_CHAT, 404, "not_found");
        unknown.model = Some("no-such-model");
        // Refused after the tags were read: the refusal carries them.
        calls.push(
            Call::new(
                unknown,
                OPENAI_CHAT,
                chat("no-such-model", "anyone there?", None),
            )
            .tagged("doc_type=receipt", json!({"doc_type": "receipt"})),
        );
    }
    {
        // An undeclared tag key: refused, and the record has no tags.
        let mut untagged = Expected::refused("x-tags-1", ANTHROPIC_MESSAGES, 400, "bad_request");
        untagged.model = None;
        calls.push(
            Call::new(
                untagged,
                ANTHROPIC_MESSAGES,
                messages("demo-x", "tagged wrongly", false),
            )
            .header("x-promptgate-tags", "doc_typ=invoice"),
        );
    }
    {
        let mut dead = Expected::refused("x-dead-1", OPENAI_CHAT, 502, "upstream");
        dead.model = Some("dead-model");
        // A provider error names the provider that failed.
        dead.provider = Some("dead");
        calls.push(Call::new(
            dead,
            OPENAI_CHAT,
            chat("dead-model", "hello?", None),
        ));
    }
    {
        // The variant is unknown, so no assignment happened: no experiment tag.
        let mut bad_override = Expected::refused("x-variant-1", OPENAI_CHAT, 400, "bad_request");
        bad_override.model = Some("greeting");
        calls.push(
            Call::new(bad_override, OPENAI_CHAT, chat("greeting", "hi", None))
                .header("x-promptgate-variant", "no-such-variant"),
        );
    }
    {
        let mut no_route = Expected::refused("x-path-1", OPENAI_CHAT, 404, "not_found");
        no_route.endpoint = None;
        let mut call = Call::new(no_route, "/v1/no-such-endpoint", String::new());
        call.method = Method::GET;
        calls.push(call);
    }
    calls
}

/// The experiments' weights as configured above, for the expected
/// `variant_share` (the assigned variant's share of its experiment's weights).
fn weights() -> Value {
    json!({
        "greeting": {"control": 50, "friendly": 50},
        "summarize": {"primary": 1, "backup": 0, "concise": 0},
        "broken": {"only": 1},
    })
}

/// Feedback posted after the traffic, in this order. `g-control-1` gets
/// `thumbs_up` twice (the later value is the one that counts); `s-fallback-1`
/// has an abandoned attempt beside its served record; `p-demo-1` is in no
/// experiment; nobody made `no-such-request` (the gateway does not check).
fn feedback_events() -> Vec<Value> {
    vec![
        json!({"request_id": "g-control-1", "metric": "thumbs_up", "value": true}),
        json!({"request_id": "g-control-2", "metric": "thumbs_up", "value": true}),
        json!({"request_id": "g-control-2", "metric": "rating", "value": 4}),
        json!({"request_id": "g-friendly-1", "metric": "thumbs_up", "value": true,
               "comment": "lovely", "metadata": {"screen": "chat", "step": 2}}),
        json!({"request_id": "g-friendly-1", "metric": "rating", "value": 5.0}),
        json!({"request_id": "g-friendly-2", "metric": "thumbs_up", "value": false}),
        json!({"request_id": "g-beta-1", "metric": "thumbs_up", "value": true}),
        json!({"request_id": "s-fallback-1", "metric": "thumbs_up", "value": true}),
        json!({"request_id": "s-fallback-1", "metric": "rating", "value": 2.5}),
        json!({"request_id": "s-primary-1", "metric": "rating", "value": 3.0}),
        json!({"request_id": "s-primary-2", "metric": "rating", "value": -1.5}),
        json!({"request_id": "p-demo-1", "metric": "thumbs_up", "value": false}),
        json!({"request_id": "no-such-request", "metric": "thumbs_up", "value": true}),
        json!({"request_id": "g-control-1", "metric": "thumbs_up", "value": false,
               "comment": "changed my mind"}),
    ]
}

/// Posts `feedback_events`, a few milliseconds apart so that their
/// `ts_received` (in milliseconds) keep the order, and returns them with the
/// feedback id the gateway answered.
async fn post_feedback(http: &TestClient, gw: &TestGateway) -> Vec<Value> {
    let mut posted = Vec::new();
    for mut event in feedback_events() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let reply = send(
            http,
            Method::POST,
            &gw.url(FEEDBACK),
            &[("content-type", "application/json")],
            event.to_string(),
        )
        .await;
        assert_eq!(reply.status.as_u16(), 202, "{event}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["request_id"], event["request_id"], "{answer}");
        event["feedback_id"] = answer["id"].clone();
        posted.push(event);
    }
    posted
}

/// A feedback event the gateway refuses (an undeclared metric): like any
/// refusal, a record in the request table.
fn feedback_refusal() -> Call {
    let refused = Expected::refused("f-refused-1", FEEDBACK, 400, "bad_request");
    let body = json!({"request_id": "g-control-1", "metric": "stars", "value": 5});
    Call::new(refused, FEEDBACK, body.to_string())
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The shadow calls reported so far (they end after their served requests).
fn shadow_exchanges(gw: &TestGateway) -> Vec<FinishedExchange> {
    gw.sink
        .all()
        .into_iter()
        .filter(|e| {
            e.start
                .experiment
                .as_ref()
                .is_some_and(|tag| tag.shadow_of.is_some())
        })
        .collect()
}

/// Waits until at least `n` shadow calls have been reported (so recorded:
/// the audit log gets each exchange before the test's sink does).
async fn wait_for_shadows(gw: &TestGateway, n: usize) {
    support::wait::until(
        &format!("{n} shadow calls reported"),
        Duration::from_secs(10),
        || shadow_exchanges(gw).len() >= n,
    )
    .await
}

/// Waits until at least `n` audit objects are stored under `dir`.
async fn wait_for_objects(dir: &Path, n: usize) {
    support::wait::until(
        &format!("{n} audit objects stored under {}", dir.display()),
        Duration::from_secs(10),
        || {
            files_under(dir)
                .iter()
                .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
                .count()
                >= n
        },
    )
    .await
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Sends one call and checks the status and experiment headers; fills in
/// the variant of hash-assigned calls from the response.
async fn send_call(http: &TestClient, gw: &TestGateway, sim: &Simulator, call: &mut Call) {
    if let Some(fault) = call.fault.clone() {
        sim.push_fault(fault);
    }
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("x-request-id", &call.id),
    ];
    headers.extend(call.headers.iter().map(|(n, v)| (*n, v.as_str())));
    let url = gw.url(call.path);
    let reply = send(http, call.method.clone(), &url, &headers, call.body.clone()).await;
    assert_eq!(
        reply.status.as_u16(),
        call.status,
        "{}: {}",
        call.id,
        reply.text()
    );
    assert!(reply.error.is_none(), "{}: {:?}", call.id, reply.error);
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let served = call.records.last_mut().unwrap();
    if served.outcome != "refused"
        && let Some(experiment) = served.experiment
    {
        if served.served_variant.as_deref() == Some("?") {
            // Assigned by hash: the gateway's choice, as the caller saw it.
            let variant = header("x-promptgate-variant").expect("variant header");
            served.assigned_variant = Some(variant.clone());
            served.upstream_model = Some(variant_model(experiment, &variant));
            served.served_variant = Some(variant);
        }
        assert_eq!(
            header("x-promptgate-variant"),
            served.served_variant,
            "{}",
            call.id
        );
        assert_eq!(
            header("x-promptgate-assignment"),
            served.assignment_reason,
            "{}",
            call.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_duckdb_queries_answer_for_known_traffic() {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut gw = TestGateway::start(&config(&sim)).await;
    let http = client();

    let mut groups = traffic();
    let objects_dir = gw.dir.path().join("audit/v1");
    let mut shadows = 0;
    for (index, group) in groups.iter_mut().enumerate() {
        for call in group.iter_mut() {
            send_call(&http, &gw, &sim, call).await;
            shadows += call.shadows.len();
        }
        // Shadow calls end after their served requests: wait for them, so
        // that their records are written with this group's, not the next's.
        wait_for_shadows(&gw, shadows).await;
        // The open segment is sealed after flush_interval_ms and uploaded: once
        // its object is there, the next group starts a segment of its own.
        wait_for_objects(&objects_dir, index + 1).await;
    }
    assert!(shadows > 0, "the traffic should include shadow calls");
    // Feedback about the requests above, then an event the gateway refuses.
    let feedback = post_feedback(&http, &gw).await;
    let mut refusal = feedback_refusal();
    send_call(&http, &gw, &sim, &mut refusal).await;
    let calls: Vec<Call> = groups.into_iter().flatten().chain([refusal]).collect();
    let hashed: Vec<&str> = calls
        .iter()
        .filter(|c| c.id.starts_with("g-hash-"))
        .map(|c| c.records[0].served_variant.as_deref().unwrap())
        .collect();
    assert!(
        hashed.contains(&"control") && hashed.contains(&"friendly"),
        "the hashed users should land in both variants: {hashed:?}"
    );

    // Shutting down drains the queue into the spool, seals the last segment
    // and stores every object.
    gw.begin_shutdown().await.unwrap();
    let dir = gw.dir.path().to_owned();
    let left = files_under(&dir.join("spool/sealed"));
    assert!(
        left.is_empty(),
        "segments left unuploaded after shutdown: {left:?}"
    );
    let objects = files_under(&dir.join("audit/v1"));
    assert!(!objects.is_empty(), "no audit objects written");
    let feedback_objects = files_under(&dir.join("audit/feedback/v1"));
    assert!(!feedback_objects.is_empty(), "no feedback objects written");

    // Join each expected record with the gateway's own exchange report for
    // its token counts (refusals have none), and each expected shadow call
    // with the report of the shadow call made beside its request, for its
    // request id and token counts.
    let exchanges = gw.sink.all();
    let mut shadows_by_served: HashMap<(String, String), Vec<&FinishedExchange>> = HashMap::new();
    for exchange in &exchanges {
        if let Some(tag) = &exchange.start.experiment
            && let Some(served) = &tag.shadow_of
        {
            shadows_by_served
                .entry((served.to_string(), tag.served_variant.to_string()))
                .or_default()
                .push(exchange);
        }
    }
    let mut by_key: HashMap<(String, bool), &FinishedExchange> = HashMap::new();
    for exchange in &exchanges {
        let key = (
            exchange.start.request_id.to_string(),
            exchange.outcome == Outcome::Abandoned,
        );
        assert!(
            by_key.insert(key.clone(), exchange).is_none(),
            "two exchanges for {key:?}"
        );
    }
    let mut records = Vec::new();
    for call in &calls {
        let served = call.records.last().unwrap();
        for &variant in &call.shadows {
            let key = (call.id.clone(), variant.to_owned());
            let found = shadows_by_served.remove(&key).unwrap_or_default();
            assert_eq!(found.len(), 1, "shadow calls for {key:?}");
            let exchange = found[0];
            let id = exchange.start.request_id.to_string();
            assert_ne!(id, call.id, "a shadow call has a request id of its own");
            assert!(by_key.remove(&(id.clone(), false)).is_some(), "{key:?}");
            assert_eq!(exchange.start.status, 200, "{key:?}");
            assert_eq!(exchange.outcome, Outcome::Completed, "{key:?}");
            records.push(served.shadow(variant, &id).json(Some(exchange)));
        }
    }
    assert!(
        shadows_by_served.is_empty(),
        "shadow calls the test did not expect: {:?}",
        shadows_by_served.keys().collect::<Vec<_>>()
    );
    for expected in calls.iter().flat_map(|c| &c.records) {
        let exchange = match expected.outcome {
            "refused" => None,
            outcome => {
                let key = (expected.request_id.clone(), outcome == "abandoned");
                let exchange = by_key
                    .remove(&key)
                    .unwrap_or_else(|| panic!("no exchange reported for {key:?}"));
                assert_eq!(exchange.start.status, expected.status, "{key:?}");
                Some(exchange)
            }
        };
        records.push(expected.json(exchange));
    }
    assert!(
        by_key.is_empty(),
        "exchanges the test did not expect: {:?}",
        by_key.keys().collect::<Vec<_>>()
    );
    let expectation = json!({
        "unit_key_secret": PROVIDER_KEY,
        "instance": "gw-test",
        "redacted_paths": ["request.user"],
        "prices": PRICES
            .iter()
            .map(|(m, i, o)| (m.to_string(), json!({"input_per_million": i, "output_per_million": o})))
            .collect::<serde_json::Map<_, _>>(),
        "records": records,
        "feedback": feedback,
        "weights": weights(),
    });
    let expect_path = dir.join("expect.json");
    std::fs::write(
        &expect_path,
        serde_json::to_vec_pretty(&expectation).unwrap(),
    )
    .unwrap();
    if let Some(keep) = std::env::var_os("PROMPTGATE_AUDIT_KEEP") {
        let keep = PathBuf::from(keep);
        copy_tree(&dir.join("audit"), &keep.join("audit"));
        std::fs::copy(&expect_path, keep.join("expect.json")).unwrap();
        println!(
            "kept the audit objects and expectation in {}",
            keep.display()
        );
    }

    support::pytest::run(
        "analytics",
        "the pinned duckdb/pytest packages",
        vec![
            (
                "PROMPTGATE_AUDIT_DIR",
                dir.join("audit").display().to_string(),
            ),
            ("PROMPTGATE_AUDIT_EXPECT", expect_path.display().to_string()),
        ],
    )
    .await;
}
