//! Experiments end to end: opting in, sticky assignment, flag rules and their
//! precedence, override permissions, prompt templates in both dialects (JSON
//! and SSE), the fallback variant, and agreement between replicas and the
//! admin view.

use crate::support;

use std::time::Duration;

use futures_util::future::join_all;
use http::{Method, StatusCode};
use promptgate::exchange::{ExperimentTag, FinishedExchange, Outcome};
use promptgate::server;
use promptgate::simulator::{Fault, SimConfig, Simulator};
use promptgate_core::experiments::assign::{choose_variant, is_enrolled};
use promptgate_core::experiments::decide::Reason;
use serde_json::{Value, json};
use support::*;

/// Key of the second client, `qa-tool`, the one allowed to override variants.
const QA_KEY: &str = "pg-qa-key";

const OPENAI_CHAT: &str = "/v1/chat/completions";
const ANTHROPIC_MESSAGES: &str = "/v1/messages";

/// Two clients, the simulator as an OpenAI- and an Anthropic-kind provider
/// (no retries), the demo provider, and `gpt-*` / `claude-*` routed normally.
fn config(sim: &Simulator, experiments: &str) -> String {
    format!(
        r#"
[auth]
[[auth.clients]]
id = "test-app"
key_sha256 = "{app}"

[[auth.clients]]
id = "qa-tool"
key_sha256 = "{qa}"

[providers.sim_openai]
kind = "openai"
base_url = "{openai}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0
first_byte_timeout_ms = 2000

[providers.sim_anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0
first_byte_timeout_ms = 2000

[providers.demo]
kind = "demo"

[[routes]]
models = ["gpt-*", "claude-*"]
providers = ["sim_openai", "sim_anthropic"]
{experiments}"#,
        app = server::hash_key(CLIENT_KEY),
        qa = server::hash_key(QA_KEY),
        openai = sim.openai_base_url(),
        anthropic = sim.anthropic_base_url(),
    )
}

/// A 50/50 experiment with different models, parameters and system prompts;
/// only `qa-tool` may choose its variant.
const TONE: &str = r#"
[experiments.tone]
unit_key = { header = "x-user-id" }
override_clients = ["qa-tool"]

[[experiments.tone.variants]]
name = "concise"
weight = 50
model = "gpt-4o-mini"
providers = ["sim_openai", "sim_anthropic"]
system = "Answer in one sentence."
params = { temperature = 0.2 }

[[experiments.tone.variants]]
name = "friendly"
weight = 50
model = "gpt-4o"
providers = ["sim_openai", "sim_anthropic"]
system = "Be warm and friendly."
params = { temperature = 0.9, max_tokens = 99 }
"#;

const TONE_VARIANTS: [(&str, f64); 2] = [("concise", 50.0), ("friendly", 50.0)];

/// The variant the pure assignment function gives `unit` in `tone`.
fn tone_variant(unit: &str) -> &'static str {
    TONE_VARIANTS[choose_variant("tone", unit, TONE_VARIANTS).unwrap()].0
}

/// The first `user-N` that `tone` assigns to `variant`.
fn tone_user_for(variant: &str) -> String {
    (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| tone_variant(u) == variant)
        .unwrap()
}

/// Everyone hashes to `control` (the others weigh 0); rules pick the rest.
const FLAGS: &str = r#"
[experiments.flags]
unit_key = { header = "x-user-id" }
override_clients = ["qa-tool"]

[[experiments.flags.variants]]
name = "control"
weight = 1
model = "m-control"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.flags.variants]]
name = "beta"
weight = 0
model = "m-beta"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.flags.variants]]
name = "gamma"
weight = 0
model = "m-gamma"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.flags.variants]]
name = "delta"
weight = 0
model = "m-delta"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.flags.rules]]
name = "beta"
variant = "beta"
attribute = "header:X-Beta"
equals = "on"

[[experiments.flags.rules]]
name = "beta-any"
variant = "gamma"
attribute = "header:x-beta"
in = ["on", "maybe"]

[[experiments.flags.rules]]
name = "qa"
variant = "gamma"
attribute = "client_id"
equals = "qa-tool"

[[experiments.flags.rules]]
name = "new-models"
variant = "delta"
attribute = "model"
prefix = "gpt-4.1"

[[experiments.flags.rules]]
name = "tier"
variant = "beta"
attribute = "metadata:tier"
in = ["gold", "platinum"]

[[experiments.flags.rules]]
name = "org"
variant = "delta"
attribute = "metadata:org"
prefix = "acme-"

[[experiments.flags.rules]]
name = "seats"
variant = "gamma"
attribute = "metadata:seats"
equals = "10"

[experiments.killed]
unit_key = { header = "x-user-id" }
killswitch = "safe"
override_clients = ["*"]

[[experiments.killed.variants]]
name = "risky"
weight = 1
model = "m-risky"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.killed.variants]]
name = "safe"
weight = 0
model = "m-safe"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.killed.rules]]
name = "force-risky"
variant = "risky"
attribute = "header:x-risky"
equals = "1"

[experiments.off]
enabled = false
unit_key = { header = "x-user-id" }
default_variant = "stable"
override_clients = ["*"]

[[experiments.off.variants]]
name = "new"
weight = 1
model = "m-new"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.off.variants]]
name = "stable"
weight = 0
model = "m-stable"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.off.rules]]
name = "force-new"
variant = "new"
attribute = "header:x-new"
equals = "1"

[experiments.closed]
enrolment_percent = 0
unit_key = { header = "x-user-id" }
default_variant = "control"

[[experiments.closed.variants]]
name = "treatment"
weight = 1
model = "m-treatment"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.closed.variants]]
name = "control"
weight = 1
model = "m-control"
providers = ["sim_openai", "sim_anthropic"]

[[experiments.closed.rules]]
name = "pilot"
variant = "treatment"
attribute = "header:x-pilot"
equals = "1"
"#;

/// Single-variant experiments, one per way a template can shape a request.
const TEMPLATES: &str = r#"
[experiments.sys]
unit_key = { header = "x-user-id" }

[[experiments.sys.variants]]
name = "persona"
weight = 1
model = "m-sys"
providers = ["sim_openai", "sim_anthropic"]
system = "You are {{persona}} for {{ company }}."

[experiments.pre]
unit_key = { header = "x-user-id" }

[[experiments.pre.variants]]
name = "ctx"
weight = 1
model = "m-pre"
providers = ["sim_openai", "sim_anthropic"]
system = "Use the context."
user = "Context: {{topic}}"
messages = "prepend"

[experiments.rep]
unit_key = { header = "x-user-id" }

[[experiments.rep.variants]]
name = "summary"
weight = 1
model = "m-rep"
providers = ["sim_openai", "sim_anthropic"]
user = "Summarise for {{audience}}: {{input}}"
messages = "replace"

[experiments.demo-exp]
unit_key = { header = "x-user-id" }

[[experiments.demo-exp.variants]]
name = "d"
weight = 1
model = "demo-model"
providers = ["demo"]
system = "You are {{persona}}."
"#;

async fn start(experiments: &str) -> (Simulator, TestGateway, TestClient) {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gateway = TestGateway::start(&config(&sim, experiments)).await;
    (sim, gateway, client())
}

/// POSTs `body` as JSON with the client key `key` and extra headers.
async fn call(
    client: &TestClient,
    gw: &TestGateway,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    let auth = format!("Bearer {key}");
    let mut all = vec![
        ("content-type", "application/json"),
        ("authorization", &*auth),
    ];
    all.extend_from_slice(headers);
    send(client, Method::POST, &gw.url(path), &all, body.to_string()).await
}

fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

/// (experiment, served variant, reason) from the response headers.
fn experiment_headers(reply: &Reply) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        header(reply, "x-promptgate-experiment"),
        header(reply, "x-promptgate-variant"),
        header(reply, "x-promptgate-assignment"),
    )
}

#[track_caller]
fn assert_served(reply: &Reply, experiment: &str, variant: &str, reason: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        experiment_headers(reply),
        (Some(experiment), Some(variant), Some(reason)),
        "{:?}",
        reply.headers
    );
}

/// The exchange the sink recorded for `request_id`.
async fn exchange_for(gw: &TestGateway, request_id: &str) -> FinishedExchange {
    support::wait::eventually(
        &format!("an exchange recorded for {request_id}"),
        Duration::from_secs(5),
        async || {
            gw.sink
                .all()
                .into_iter()
                .find(|e| &*e.start.request_id == request_id)
        },
    )
    .await
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn anthropic(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": text}]})
}

// --- 1. Opting in ------------------------------------------------------------

#[tokio::test]
async fn opt_in_by_model_name_or_header_and_unknown_experiment_is_404_in_both_dialects() {
    let (sim, gw, client) = start(TONE).await;
    let user = [("x-user-id", "user-1")];
    let expected = tone_variant("user-1");

    // By model name.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &user,
        &chat("tone", "hi"),
    )
    .await;
    assert_served(&reply, "tone", expected, "hash");
    let by_model = sim.received().last().unwrap().json();

    // By header, whatever model the caller names.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[("x-user-id", "user-1"), ("x-promptgate-experiment", "tone")],
        &chat("gpt-4o", "hi"),
    )
    .await;
    assert_served(&reply, "tone", expected, "hash");
    let by_header = sim.received().last().unwrap().json();
    assert_eq!(by_model, by_header, "both opt-ins send the same request");
    assert_eq!(
        by_model["model"],
        if expected == "concise" {
            "gpt-4o-mini"
        } else {
            "gpt-4o"
        }
    );
    // Neither the opt-in nor the unit header is the provider's business.
    let upstream = sim.received().last().unwrap().clone();
    assert_eq!(upstream.header("x-promptgate-experiment"), None);

    // Anthropic dialect, by header.
    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &[("x-user-id", "user-1"), ("x-promptgate-experiment", "tone")],
        &anthropic("claude-x", "hi"),
    )
    .await;
    assert_served(&reply, "tone", expected, "hash");
    assert_eq!(sim.received().last().unwrap().path, "/v1/messages");

    // Without either, a model is routed as usual and no experiment is reported.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &user,
        &chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(experiment_headers(&reply), (None, None, None));
    assert_eq!(sim.received().last().unwrap().json(), chat("gpt-4o", "hi"));

    // Unknown experiment in the header: 404, in each caller's shape.
    let before = sim.received().len();
    let nope = [("x-promptgate-experiment", "nope")];
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &nope,
        &chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json(),
        json!({"error": {
            "message": "no experiment named `nope`",
            "type": "invalid_request_error",
            "param": null,
            "code": "experiment_not_found",
        }})
    );
    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &nope,
        &anthropic("claude-x", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {
            "type": "not_found_error",
            "message": "no experiment named `nope`",
        }})
    );
    assert_eq!(sim.received().len(), before, "nothing reached the provider");
}

// --- 2. Sticky hash assignment -------------------------------------------------

#[tokio::test]
async fn hash_assignment_is_sticky_split_and_sends_the_variants_request() {
    let (sim, gw, client) = start(TONE).await;

    // ~200 users: each gets exactly what the pure assignment function says,
    // and both variants occur.
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut counts = [0usize; 2];
    for batch in users.chunks(50) {
        let replies = join_all(batch.iter().map(|user| {
            let (client, gw) = (&client, &gw);
            async move {
                let headers = [("x-user-id", user.as_str())];
                call(
                    client,
                    gw,
                    OPENAI_CHAT,
                    CLIENT_KEY,
                    &headers,
                    &chat("tone", "hi"),
                )
                .await
            }
        }))
        .await;
        for (user, reply) in batch.iter().zip(&replies) {
            assert_served(reply, "tone", tone_variant(user), "hash");
            counts[usize::from(tone_variant(user) == "friendly")] += 1;
        }
    }
    assert!(
        counts.iter().all(|&n| (60..=140).contains(&n)),
        "a 50/50 split gave {counts:?}"
    );

    // The same user, again and again: the same variant.
    for _ in 0..5 {
        let reply = call(
            &client,
            &gw,
            OPENAI_CHAT,
            CLIENT_KEY,
            &[("x-user-id", "user-7")],
            &chat("tone", "again"),
        )
        .await;
        assert_served(&reply, "tone", tone_variant("user-7"), "hash");
    }

    // What the provider receives: the variant's model, parameters (replacing
    // the caller's) and system prompt, and no `promptgate` field.
    let caller_body = json!({
        "model": "tone",
        "temperature": 1.5,
        "messages": [
            {"role": "system", "content": "caller's own system prompt"},
            {"role": "user", "content": "hello"},
        ],
        "promptgate": {"variables": {"unused": "x"}},
    });
    let expected_upstream = [
        (
            "concise",
            json!({
                "model": "gpt-4o-mini",
                "temperature": 0.2,
                "messages": [
                    {"role": "system", "content": "Answer in one sentence."},
                    {"role": "user", "content": "hello"},
                ],
            }),
        ),
        (
            "friendly",
            json!({
                "model": "gpt-4o",
                "temperature": 0.9,
                "max_tokens": 99,
                "messages": [
                    {"role": "system", "content": "Be warm and friendly."},
                    {"role": "user", "content": "hello"},
                ],
            }),
        ),
    ];
    for (variant, upstream) in expected_upstream {
        let user = tone_user_for(variant);
        let request_id = format!("req-{variant}");
        let reply = call(
            &client,
            &gw,
            OPENAI_CHAT,
            CLIENT_KEY,
            &[("x-user-id", &user), ("x-request-id", &request_id)],
            &caller_body,
        )
        .await;
        assert_served(&reply, "tone", variant, "hash");
        let received = sim.received().last().unwrap().clone();
        assert_eq!(received.header("x-request-id"), Some(request_id.as_str()));
        assert_eq!(received.json(), upstream, "{variant}");
        assert!(!received.body.contains("promptgate"), "{}", received.body);

        let exchange = exchange_for(&gw, &request_id).await;
        assert_eq!(exchange.outcome, Outcome::Completed);
        let tag = exchange.start.experiment.expect("tagged");
        assert_eq!(
            tag,
            ExperimentTag {
                experiment: "tone".into(),
                assigned_variant: variant.into(),
                served_variant: variant.into(),
                assigned_share: Some(0.5),
                variant_version: tag.variant_version.clone(),
                reason: Reason::Hash,
                unit_key: user.as_str().into(),
                sticky: true,
                log_bodies: true,
                shadow_of: None,
            }
        );
        assert!(tag.variant_version.starts_with("h-"), "{tag:?}");
    }

    // Without the unit header, the request id stands in: not sticky.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[("x-request-id", "req-anonymous")],
        &chat("tone", "who am I"),
    )
    .await;
    assert_served(&reply, "tone", tone_variant("req-anonymous"), "hash");
    let tag = exchange_for(&gw, "req-anonymous")
        .await
        .start
        .experiment
        .unwrap();
    assert_eq!(&*tag.unit_key, "req-anonymous");
    assert!(!tag.sticky);
    assert_eq!(tag.reason, Reason::Hash);
}

// --- 3. Flag rules and precedence -------------------------------------------------

/// (case name, extra headers, body, expected variant, expected reason).
type FlagCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Value,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn flag_rules_match_headers_clients_models_and_metadata_in_order() {
    let (sim, gw, client) = start(FLAGS).await;
    let flags = |body: Value| {
        let mut body = body;
        body["model"] = json!("flags");
        body
    };
    let plain = flags(chat("", "hi"));
    let cases: Vec<FlagCase> = vec![
        ("nothing", vec![], plain.clone(), "control", "hash"),
        // Both `beta` and `beta-any` match `on`: the first in config order wins.
        (
            "header on",
            vec![("x-beta", "on")],
            plain.clone(),
            "beta",
            "flag:beta",
        ),
        (
            "header maybe",
            vec![("x-beta", "maybe")],
            plain.clone(),
            "gamma",
            "flag:beta-any",
        ),
        (
            "header off",
            vec![("x-beta", "off")],
            plain.clone(),
            "control",
            "hash",
        ),
        (
            "metadata in",
            vec![],
            flags(
                json!({"messages": [{"role": "user", "content": "hi"}], "metadata": {"tier": "gold"}}),
            ),
            "beta",
            "flag:tier",
        ),
        (
            "metadata not in",
            vec![],
            flags(
                json!({"messages": [{"role": "user", "content": "hi"}], "metadata": {"tier": "silver"}}),
            ),
            "control",
            "hash",
        ),
        (
            "metadata prefix",
            vec![],
            flags(
                json!({"messages": [{"role": "user", "content": "hi"}], "metadata": {"org": "acme-eu"}}),
            ),
            "delta",
            "flag:org",
        ),
        (
            "metadata not prefix",
            vec![],
            flags(
                json!({"messages": [{"role": "user", "content": "hi"}], "metadata": {"org": "bigco-acme-"}}),
            ),
            "control",
            "hash",
        ),
        (
            "metadata number equals",
            vec![],
            flags(
                json!({"messages": [{"role": "user", "content": "hi"}], "metadata": {"seats": 10}}),
            ),
            "gamma",
            "flag:seats",
        ),
        (
            "top-level field is not metadata",
            vec![],
            flags(json!({"messages": [{"role": "user", "content": "hi"}], "tier": "gold"})),
            "control",
            "hash",
        ),
    ];
    for (name, headers, body, variant, reason) in cases {
        let mut all = vec![("x-user-id", "user-1")];
        all.extend(headers);
        let reply = call(&client, &gw, OPENAI_CHAT, CLIENT_KEY, &all, &body).await;
        assert_eq!(
            experiment_headers(&reply),
            (Some("flags"), Some(variant), Some(reason)),
            "case `{name}`: {}",
            reply.text()
        );
        assert_eq!(
            sim.received().last().unwrap().json()["model"],
            format!("m-{variant}"),
            "case `{name}`"
        );
    }

    // On the client id.
    let reply = call(&client, &gw, OPENAI_CHAT, QA_KEY, &[], &plain).await;
    assert_served(&reply, "flags", "gamma", "flag:qa");
    // An earlier rule still wins over the client rule.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        QA_KEY,
        &[("x-beta", "on")],
        &plain,
    )
    .await;
    assert_served(&reply, "flags", "beta", "flag:beta");
    // An override from an allowed client beats every rule.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        QA_KEY,
        &[("x-beta", "on"), ("x-promptgate-variant", "control")],
        &plain,
    )
    .await;
    assert_served(&reply, "flags", "control", "override");

    // On the model the caller asked for (opting in by header).
    let opt_in = [("x-promptgate-experiment", "flags")];
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &opt_in,
        &chat("gpt-4.1-mini", "hi"),
    )
    .await;
    assert_served(&reply, "flags", "delta", "flag:new-models");
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &opt_in,
        &chat("gpt-4o", "hi"),
    )
    .await;
    assert_served(&reply, "flags", "control", "hash");

    // The same rules apply in the Anthropic dialect.
    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &[("x-beta", "maybe")],
        &anthropic("flags", "hi"),
    )
    .await;
    assert_served(&reply, "flags", "gamma", "flag:beta-any");
    assert_eq!(sim.received().last().unwrap().json()["model"], "m-gamma");

    // The sink carries the rule's name.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[
            ("x-beta", "on"),
            ("x-request-id", "req-flag"),
            ("x-user-id", "u"),
        ],
        &plain,
    )
    .await;
    assert_served(&reply, "flags", "beta", "flag:beta");
    let tag = exchange_for(&gw, "req-flag")
        .await
        .start
        .experiment
        .unwrap();
    assert_eq!(tag.reason, Reason::Flag("beta".into()));
    assert_eq!(&*tag.assigned_variant, "beta");
    assert!(tag.sticky);
}

#[tokio::test]
async fn killswitch_beats_override_and_rules() {
    let (sim, gw, client) = start(FLAGS).await;
    let body = chat("killed", "hi");
    for headers in [
        vec![],
        vec![("x-promptgate-variant", "risky")],
        // Not even a 400 for a variant that does not exist: the switch wins.
        vec![("x-promptgate-variant", "no-such-variant")],
        vec![("x-risky", "1")],
        vec![("x-risky", "1"), ("x-promptgate-variant", "risky")],
    ] {
        let reply = call(&client, &gw, OPENAI_CHAT, CLIENT_KEY, &headers, &body).await;
        assert_served(&reply, "killed", "safe", "killswitch");
        assert_eq!(sim.received().last().unwrap().json()["model"], "m-safe");
    }
    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &[("x-risky", "1"), ("x-request-id", "req-killed")],
        &anthropic("killed", "hi"),
    )
    .await;
    assert_served(&reply, "killed", "safe", "killswitch");
    let tag = exchange_for(&gw, "req-killed")
        .await
        .start
        .experiment
        .unwrap();
    assert_eq!(tag.reason, Reason::Killswitch);
    assert_eq!(&*tag.served_variant, "safe");
}

#[tokio::test]
async fn disabled_experiment_serves_the_default_variant() {
    let (sim, gw, client) = start(FLAGS).await;
    let body = chat("off", "hi");
    for headers in [
        vec![("x-user-id", "user-1")],
        vec![("x-user-id", "user-2"), ("x-new", "1")],
        vec![("x-promptgate-variant", "new")],
        vec![("x-promptgate-variant", "no-such-variant")],
    ] {
        let reply = call(&client, &gw, OPENAI_CHAT, CLIENT_KEY, &headers, &body).await;
        assert_served(&reply, "off", "stable", "disabled");
        assert_eq!(sim.received().last().unwrap().json()["model"], "m-stable");
    }
}

#[tokio::test]
async fn zero_enrolment_puts_everyone_on_the_default_variant_but_rules_still_apply() {
    let (sim, gw, client) = start(FLAGS).await;
    for i in 0..20 {
        let user = format!("user-{i}");
        let reply = call(
            &client,
            &gw,
            OPENAI_CHAT,
            CLIENT_KEY,
            &[("x-user-id", &user)],
            &chat("closed", "hi"),
        )
        .await;
        assert_served(&reply, "closed", "control", "not_enrolled");
        assert_eq!(sim.received().last().unwrap().json()["model"], "m-control");
    }
    // Rules come before enrolment.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[("x-user-id", "user-1"), ("x-pilot", "1")],
        &chat("closed", "hi"),
    )
    .await;
    assert_served(&reply, "closed", "treatment", "flag:pilot");
    assert_eq!(
        sim.received().last().unwrap().json()["model"],
        "m-treatment"
    );
}

// --- 4. Override permission --------------------------------------------------------

#[tokio::test]
async fn override_is_allowed_only_for_listed_clients() {
    let (sim, gw, client) = start(TONE).await;
    // A user the hash puts in `concise`, forced to `friendly`.
    let user = tone_user_for("concise");
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        QA_KEY,
        &[
            ("x-user-id", &user),
            ("x-promptgate-variant", " friendly "),
            ("x-request-id", "req-override"),
        ],
        &chat("tone", "hi"),
    )
    .await;
    assert_served(&reply, "tone", "friendly", "override");
    let upstream = sim.received().last().unwrap().clone();
    assert_eq!(upstream.json()["model"], "gpt-4o");
    assert_eq!(
        upstream.header("x-promptgate-variant"),
        None,
        "the override header is not forwarded"
    );
    let tag = exchange_for(&gw, "req-override")
        .await
        .start
        .experiment
        .unwrap();
    assert_eq!(tag.reason, Reason::Override);
    assert_eq!(*tag.unit_key, *user);

    let before = sim.received().len();
    // Another client: 403 in the caller's dialect.
    let forbidden = [
        ("x-user-id", user.as_str()),
        ("x-promptgate-variant", "friendly"),
    ];
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &forbidden,
        &chat("tone", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(body["error"]["code"], "override_forbidden");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("experiment `tone`")
            && message.contains("x-promptgate-variant")
            && message.contains("override_clients"),
        "{message}"
    );
    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &forbidden,
        &anthropic("tone", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {"type": "permission_error", "message": message}})
    );

    // An allowed client naming a variant that does not exist: 400.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        QA_KEY,
        &[("x-promptgate-variant", "shouty")],
        &chat("tone", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], "variant_not_found");
    assert_eq!(
        reply.json()["error"]["message"],
        "experiment `tone` has no variant `shouty`"
    );
    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        QA_KEY,
        &[("x-promptgate-variant", "shouty")],
        &anthropic("tone", "hi"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert_eq!(sim.received().len(), before, "refusals reach no provider");
}

#[tokio::test]
async fn override_for_everyone_works_in_open_mode_and_a_client_list_does_not() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let config = format!(
        r#"
[auth]
open = true

[providers.sim]
kind = "openai"
base_url = "{}"
max_retries = 0

[experiments.anyone]
unit_key = {{ header = "x-user-id" }}
override_clients = ["*"]

[[experiments.anyone.variants]]
name = "a"
weight = 1
model = "m-a"
providers = ["sim"]

[[experiments.anyone.variants]]
name = "b"
weight = 0
model = "m-b"
providers = ["sim"]

[experiments.listed]
unit_key = {{ header = "x-user-id" }}
override_clients = ["qa-tool"]

[[experiments.listed.variants]]
name = "a"
weight = 1
model = "m-a"
providers = ["sim"]

[[experiments.listed.variants]]
name = "b"
weight = 0
model = "m-b"
providers = ["sim"]
"#,
        sim.openai_base_url()
    );
    let gw = TestGateway::start(&config).await;
    let client = client();
    let open = |model: &str, variant: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(variant) = variant {
            headers.push(("x-promptgate-variant", variant));
        }
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let (client, url, body) = (&client, gw.url(OPENAI_CHAT), chat(model, "hi"));
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            send(client, Method::POST, &url, &headers, body.to_string()).await
        }
    };
    assert_served(&open("anyone", None).await, "anyone", "a", "hash");
    assert_served(&open("anyone", Some("b")).await, "anyone", "b", "override");
    assert_eq!(sim.received().last().unwrap().json()["model"], "m-b");
    // Open mode has no client id, so no list can name the caller.
    let reply = open("listed", Some("b")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "override_forbidden");
}

// --- 5. Templates -------------------------------------------------------------------

fn variables(pairs: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"variables": map})
}

#[tokio::test]
async fn templates_render_into_openai_chat() {
    let (sim, gw, client) = start(TEMPLATES).await;
    let conversation = json!([
        {"role": "system", "content": "caller's system prompt"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]);
    let vars = variables(&[
        ("persona", "a pirate"),
        ("company", "Acme"),
        ("topic", "tides"),
        ("audience", "kids"),
    ]);
    let body = |model: &str| json!({"model": model, "messages": conversation, "promptgate": vars});
    let cases = [
        // `system` replaces the caller's system message, the rest is kept.
        (
            "sys",
            json!({"model": "m-sys", "messages": [
                {"role": "system", "content": "You are a pirate for Acme."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [{"type": "text", "text": "second question"}]},
            ]}),
        ),
        // `prepend`: the user template goes before the caller's messages.
        (
            "pre",
            json!({"model": "m-pre", "messages": [
                {"role": "system", "content": "Use the context."},
                {"role": "user", "content": "Context: tides"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [{"type": "text", "text": "second question"}]},
            ]}),
        ),
        // `replace`: the caller's conversation is replaced; `{{input}}` is its
        // last user message. No system template: the caller's is kept.
        (
            "rep",
            json!({"model": "m-rep", "messages": [
                {"role": "system", "content": "caller's system prompt"},
                {"role": "user", "content": "Summarise for kids: second question"},
            ]}),
        ),
    ];
    for (model, upstream) in cases {
        let reply = call(&client, &gw, OPENAI_CHAT, CLIENT_KEY, &[], &body(model)).await;
        assert_eq!(reply.status, StatusCode::OK, "{model}: {}", reply.text());
        let received = sim.received().last().unwrap().clone();
        assert_eq!(received.path, "/v1/chat/completions");
        assert_eq!(received.json(), upstream, "{model}");
    }

    // `input` supplied by the caller wins over the builtin.
    let mut explicit = body("rep");
    explicit["promptgate"]["variables"]["input"] = json!("my own input");
    let reply = call(&client, &gw, OPENAI_CHAT, CLIENT_KEY, &[], &explicit).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        sim.received().last().unwrap().json()["messages"][1]["content"],
        "Summarise for kids: my own input"
    );

    // The demo provider answers following the rendered system prompt.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[],
        &json!({"model": "demo-exp", "messages": [{"role": "user", "content": "hi there"}],
                "promptgate": variables(&[("persona", "a pirate")])}),
    )
    .await;
    assert_served(&reply, "demo-exp", "d", "hash");
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "Hello from the promptgate demo provider (demo-model), following \"You are a pirate.\". You said: \"hi there\""
    );
}

#[tokio::test]
async fn templates_render_into_anthropic_messages() {
    let (sim, gw, client) = start(TEMPLATES).await;
    let vars = variables(&[
        ("persona", "a pirate"),
        ("company", "Acme"),
        ("topic", "tides"),
        ("audience", "kids"),
    ]);
    let body = |model: &str| {
        json!({
            "model": model,
            "max_tokens": 32,
            "system": "caller's system prompt",
            "messages": [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
            ],
            "promptgate": vars,
        })
    };
    let conversation = json!([
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]);
    let cases = [
        (
            "sys",
            json!({"model": "m-sys", "max_tokens": 32,
                   "system": "You are a pirate for Acme.", "messages": conversation}),
        ),
        (
            "pre",
            json!({"model": "m-pre", "max_tokens": 32, "system": "Use the context.",
            "messages": [
                {"role": "user", "content": "Context: tides"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
            ]}),
        ),
        (
            "rep",
            json!({"model": "m-rep", "max_tokens": 32, "system": "caller's system prompt",
                   "messages": [{"role": "user", "content": "Summarise for kids: second question"}]}),
        ),
    ];
    for (model, upstream) in cases {
        let reply = call(
            &client,
            &gw,
            ANTHROPIC_MESSAGES,
            CLIENT_KEY,
            &[("anthropic-version", "2023-06-01")],
            &body(model),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{model}: {}", reply.text());
        assert_eq!(reply.json()["type"], "message");
        let received = sim.received().last().unwrap().clone();
        assert_eq!(received.path, "/v1/messages");
        assert_eq!(received.header("x-api-key"), Some(PROVIDER_KEY));
        assert_eq!(received.json(), upstream, "{model}");
    }
}

#[tokio::test]
async fn templates_render_into_streams_in_both_dialects() {
    let (sim, gw, client) = start(TEMPLATES).await;
    let vars = variables(&[("persona", "a pirate"), ("company", "Acme")]);

    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[("x-request-id", "req-stream-openai")],
        &json!({"model": "sys", "stream": true, "promptgate": vars,
                "messages": [{"role": "user", "content": "stream please"}]}),
    )
    .await;
    assert_served(&reply, "sys", "persona", "hash");
    assert_eq!(header(&reply, "content-type"), Some("text/event-stream"));
    assert!(
        reply.text().ends_with("data: [DONE]\n\n"),
        "{}",
        reply.text()
    );
    assert_eq!(
        sim.received().last().unwrap().json(),
        json!({"model": "m-sys", "stream": true, "messages": [
            {"role": "system", "content": "You are a pirate for Acme."},
            {"role": "user", "content": "stream please"},
        ]})
    );
    let exchange = exchange_for(&gw, "req-stream-openai").await;
    assert!(exchange.start.stream);
    assert_eq!(exchange.outcome, Outcome::Completed);
    assert_eq!(
        exchange.captured.text,
        "Hello from the promptgate demo provider (m-sys), following \"You are a pirate for Acme.\". You said: \"stream please\""
    );

    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &[("x-request-id", "req-stream-anthropic")],
        &json!({"model": "sys", "stream": true, "max_tokens": 32, "promptgate": vars,
                "messages": [{"role": "user", "content": "stream please"}]}),
    )
    .await;
    assert_served(&reply, "sys", "persona", "hash");
    assert_eq!(header(&reply, "content-type"), Some("text/event-stream"));
    assert!(
        reply.text().contains("event: message_stop\n"),
        "{}",
        reply.text()
    );
    assert_eq!(
        sim.received().last().unwrap().json(),
        json!({"model": "m-sys", "stream": true, "max_tokens": 32,
               "system": "You are a pirate for Acme.",
               "messages": [{"role": "user", "content": "stream please"}]})
    );
    let exchange = exchange_for(&gw, "req-stream-anthropic").await;
    assert_eq!(exchange.outcome, Outcome::Completed);
    assert!(
        exchange
            .captured
            .text
            .contains("following \"You are a pirate for Acme.\""),
        "{}",
        exchange.captured.text
    );
}

#[tokio::test]
async fn templates_render_into_openai_responses() {
    let (sim, gw, client) = start(TEMPLATES).await;
    let vars = variables(&[
        ("persona", "a pirate"),
        ("company", "Acme"),
        ("topic", "tides"),
    ]);
    let reply = call(
        &client,
        &gw,
        "/v1/responses",
        CLIENT_KEY,
        &[],
        &json!({"model": "sys", "input": "hello", "instructions": "caller's", "promptgate": vars}),
    )
    .await;
    assert_served(&reply, "sys", "persona", "hash");
    let received = sim.received().last().unwrap().clone();
    assert_eq!(received.path, "/v1/responses");
    assert_eq!(
        received.json(),
        json!({"model": "m-sys", "input": "hello", "instructions": "You are a pirate for Acme."})
    );

    let reply = call(
        &client,
        &gw,
        "/v1/responses",
        CLIENT_KEY,
        &[],
        &json!({"model": "pre", "input": "hello", "promptgate": vars}),
    )
    .await;
    assert_served(&reply, "pre", "ctx", "hash");
    assert_eq!(
        sim.received().last().unwrap().json(),
        json!({"model": "m-pre", "instructions": "Use the context.", "input": [
            {"role": "user", "content": "Context: tides"},
            {"role": "user", "content": "hello"},
        ]})
    );
}

#[tokio::test]
async fn missing_variable_and_wrong_endpoint_are_400s() {
    let (sim, gw, client) = start(TEMPLATES).await;
    let only_persona = variables(&[("persona", "a pirate")]);

    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[],
        &json!({"model": "sys", "messages": [{"role": "user", "content": "hi"}], "promptgate": only_persona}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "missing_variable");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("the prompt template needs the variable `company`")
            && message.contains("experiment `sys`")
            && message.contains("variant `persona`"),
        "{message}"
    );

    let reply = call(
        &client,
        &gw,
        ANTHROPIC_MESSAGES,
        CLIENT_KEY,
        &[],
        &json!({"model": "pre", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the variable `topic`"),
        "{body}"
    );

    // `{{input}}` with no user message to take it from is missing too.
    let reply = call(
        &client,
        &gw,
        OPENAI_CHAT,
        CLIENT_KEY,
        &[],
        &json!({"model": "rep", "messages": [{"role": "system", "content": "Be brief."}], "promptgate": variables(&[("audience", "kids")])}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], "missing_variable");
    assert!(reply.text().contains("`input`"), "{}", reply.text());

    // Embeddings cannot take a prompt.
    let reply = call(
        &client,
        &gw,
        "/v1/embeddings",
        CLIENT_KEY,
        &[],
        &json!({"model": "sys", "input": "hello", "promptgate": variables(&[("persona", "x"), ("company", "y")])}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "experiment_not_applicable");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("experiment `sys`") && message.contains("embeddings"),
        "{message}"
    );
    assert!(sim.received().is_empty(), "{:?}", sim.received());
}

/// An experiment can never apply to embeddings, whatever the request carries:
/// the caller must hear that, not be told to add template variables first
/// (after which it would only get `experiment_not_applicable`).
#[tokio::test]
async fn experiment_on_embeddings_is_not_applicable_even_without_variables() {
    let (sim, gw, client) = start(TEMPLATES).await;
    let reply = call(
        &client,
        &gw,
        "/v1/embeddings",
        CLIENT_KEY,
        &[("x-promptgate-experiment", "sys")],
        &json!({"model": "gpt-embed", "input": "hello"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(
        reply.json()["error"]["code"],
        "experiment_not_applicable",
        "{}",
        reply.text()
    );
    assert!(sim.received().is_empty());
}

// --- 6. Fallback variant ---------------------------------------------------------------

#[tokio::test]
async fn fallback_variant_serves_when_the_assigned_variants_providers_fail() {
    let primary = Simulator::start(SimConfig::default()).await.unwrap();
    let backup = Simulator::start(SimConfig::default()).await.unwrap();
    let variants = |id: &str| {
        format!(
            r#"
[[experiments.{id}.variants]]
name = "bold"
weight = 1
model = "bold-model"
providers = ["primary"]

[[experiments.{id}.variants]]
name = "safe"
weight = 0
model = "safe-model"
providers = ["backup"]
system = "Be safe."
"#
        )
    };
    let config = format!(
        r#"
[auth]
open = true

[providers.primary]
kind = "openai"
base_url = "{primary}"
max_retries = 0

[providers.backup]
kind = "openai"
base_url = "{backup}"
max_retries = 0

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
max_retries = 0
connect_timeout_ms = 500

[experiments.unreachable]
unit_key = {{ header = "x-user-id" }}
fallback_variant = "safe"

[[experiments.unreachable.variants]]
name = "gone"
weight = 1
model = "gone-model"
providers = ["dead"]

[[experiments.unreachable.variants]]
name = "safe"
weight = 0
model = "safe-model"
providers = ["backup"]

[experiments.fb]
unit_key = {{ header = "x-user-id" }}
fallback_variant = "safe"
{fb}
[experiments.nofb]
unit_key = {{ header = "x-user-id" }}
{nofb}"#,
        primary = primary.openai_base_url(),
        backup = backup.openai_base_url(),
        fb = variants("fb"),
        nofb = variants("nofb"),
    );
    let gw = TestGateway::start(&config).await;
    let client = client();
    let post_as = |model: &str, request_id: &str| {
        let (client, url) = (&client, gw.url(OPENAI_CHAT));
        let body = chat(model, "hi").to_string();
        let request_id = request_id.to_owned();
        async move {
            send(
                client,
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json"),
                    ("x-user-id", "user-1"),
                    ("x-request-id", &request_id),
                ],
                body,
            )
            .await
        }
    };

    // Healthy: the assigned variant serves, the fallback is not touched.
    let reply = post_as("fb", "req-healthy").await;
    assert_served(&reply, "fb", "bold", "hash");
    assert_eq!(primary.received().len(), 1);
    assert!(backup.received().is_empty());

    // The assigned variant's only provider fails: the fallback serves.
    primary.push_fault(Fault::Status {
        status: 500,
        retry_after: None,
    });
    let reply = post_as("fb", "req-fallback").await;
    assert_served(&reply, "fb", "safe", "hash");
    assert_eq!(primary.received().len(), 2, "max_retries = 0: one try");
    assert_eq!(primary.received()[1].json()["model"], "bold-model");
    assert_eq!(backup.received().len(), 1);
    assert_eq!(
        backup.received()[0].json(),
        json!({"model": "safe-model", "messages": [
            {"role": "system", "content": "Be safe."},
            {"role": "user", "content": "hi"},
        ]})
    );
    // The sink sees the abandoned attempt and the exchange that served.
    let exchanges = support::wait::eventually(
        "the abandoned attempt and the served exchange of req-fallback",
        Duration::from_secs(5),
        async || {
            let found: Vec<FinishedExchange> = gw
                .sink
                .all()
                .into_iter()
                .filter(|e| &*e.start.request_id == "req-fallback")
                .collect();
            (found.len() >= 2).then_some(found)
        },
    )
    .await;
    assert_eq!(exchanges.len(), 2, "{exchanges:#?}");
    let abandoned = exchanges
        .iter()
        .find(|e| e.outcome == Outcome::Abandoned)
        .expect("the failed attempt is reported as abandoned");
    assert_eq!(abandoned.start.status, 500);
    assert_eq!(&*abandoned.start.provider, "primary");
    let tag = abandoned.start.experiment.as_ref().unwrap();
    assert_eq!(
        (&*tag.assigned_variant, &*tag.served_variant),
        ("bold", "bold")
    );
    let served = exchanges
        .iter()
        .find(|e| e.outcome == Outcome::Completed)
        .expect("the fallback completed");
    assert_eq!(served.start.status, 200);
    assert_eq!(&*served.start.provider, "backup");
    let tag = served.start.experiment.as_ref().unwrap();
    assert_eq!(
        (&*tag.assigned_variant, &*tag.served_variant),
        ("bold", "safe")
    );
    assert_eq!(tag.reason, Reason::Hash);

    // An unreachable provider fails over to the fallback variant too.
    let reply = post_as("unreachable", "req-unreachable").await;
    assert_served(&reply, "unreachable", "safe", "hash");
    assert_eq!(backup.received().len(), 2);
    assert_eq!(backup.received()[1].json()["model"], "safe-model");
    let tag = exchange_for(&gw, "req-unreachable")
        .await
        .start
        .experiment
        .unwrap();
    assert_eq!(
        (&*tag.assigned_variant, &*tag.served_variant),
        ("gone", "safe")
    );

    // Without a fallback variant the provider's 500 reaches the caller.
    primary.push_fault(Fault::Status {
        status: 500,
        retry_after: None,
    });
    let reply = post_as("nofb", "req-nofb").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["error"]["message"], "simulated error 500");
    assert_eq!(
        experiment_headers(&reply),
        (Some("nofb"), Some("bold"), Some("hash"))
    );
    assert_eq!(backup.received().len(), 2, "no fallback was tried");
    let exchange = exchange_for(&gw, "req-nofb").await;
    assert_eq!(exchange.start.status, 500);
    let tag = exchange.start.experiment.unwrap();
    assert_eq!(
        (&*tag.assigned_variant, &*tag.served_variant),
        ("bold", "bold")
    );
}

// --- 7. Replicas agree, and so does the admin view ----------------------------------

#[tokio::test]
async fn two_gateways_assign_identically_and_match_the_admin_view() {
    let config = r#"
[auth]
open = true

[providers.demo]
kind = "demo"

[experiments.split]
unit_key = { header = "x-user-id" }
enrolment_percent = 80
default_variant = "control"

[[experiments.split.variants]]
name = "control"
weight = 50
model = "m-control"
providers = ["demo"]

[[experiments.split.variants]]
name = "short"
weight = 30
model = "m-short"
providers = ["demo"]

[[experiments.split.variants]]
name = "long"
weight = 20
model = "m-long"
providers = ["demo"]
"#;
    let first = TestGateway::start(config).await;
    let second = TestGateway::start(config).await;
    let client = client();
    let users: Vec<String> = (0..300).map(|i| format!("customer-{i:03}")).collect();

    let served = |gw: &TestGateway, user: &str| {
        let (client, url, user) = (&client, gw.url(OPENAI_CHAT), user.to_owned());
        async move {
            let reply = send(
                client,
                Method::POST,
                &url,
                &[("content-type", "application/json"), ("x-user-id", &user)],
                chat("split", "hi").to_string(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            let (experiment, variant, reason) = experiment_headers(&reply);
            assert_eq!(experiment, Some("split"));
            (variant.unwrap().to_owned(), reason.unwrap().to_owned())
        }
    };
    let admin = |gw: &TestGateway, user: &str| {
        let (client, url) = (
            &client,
            gw.admin_url(&format!("/admin/experiments/split/assignment?unit={user}")),
        );
        async move {
            let reply = send(client, Method::GET, &url, &[], "").await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            let body = reply.json();
            assert_eq!(body["experiment"], "split");
            (
                body["variant"].as_str().unwrap().to_owned(),
                body["reason"].as_str().unwrap().to_owned(),
            )
        }
    };

    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    for batch in users.chunks(50) {
        let from_first = join_all(batch.iter().map(|u| served(&first, u))).await;
        let from_second = join_all(batch.iter().map(|u| served(&second, u))).await;
        let from_admin = join_all(batch.iter().map(|u| admin(&first, u))).await;
        for (i, user) in batch.iter().enumerate() {
            assert_eq!(from_first[i], from_second[i], "replicas disagree on {user}");
            assert_eq!(
                from_first[i], from_admin[i],
                "admin view disagrees on {user}"
            );
            // And both agree with the pure functions.
            let expected = if !is_enrolled("split", user, 80.0) {
                ("control", "not_enrolled")
            } else {
                let variants = [("control", 50.0), ("short", 30.0), ("long", 20.0)];
                (
                    variants[choose_variant("split", user, variants).unwrap()].0,
                    "hash",
                )
            };
            assert_eq!(
                (from_first[i].0.as_str(), from_first[i].1.as_str()),
                expected,
                "{user}"
            );
            *seen.entry(from_first[i].clone()).or_default() += 1;
        }
    }
    let kinds: Vec<_> = seen.keys().cloned().collect();
    assert_eq!(
        kinds,
        [
            ("control".to_owned(), "hash".to_owned()),
            ("control".to_owned(), "not_enrolled".to_owned()),
            ("long".to_owned(), "hash".to_owned()),
            ("short".to_owned(), "hash".to_owned()),
        ],
        "every outcome occurs among 300 users: {seen:?}"
    );

    // The admin view of the second replica agrees too, and knows no stranger.
    assert_eq!(
        admin(&second, "customer-042").await,
        served(&first, "customer-042").await
    );
    let reply = send(
        &client,
        Method::GET,
        &second.admin_url("/admin/experiments/nope/assignment?unit=x"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
