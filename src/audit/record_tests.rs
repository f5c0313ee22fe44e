use super::*;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::audit::record_reference;
use crate::exchange::{Captured, ExchangeStart, RefusalKind, SkipReason, Usage};
use promptgate_core::config::audit::{
    Durability, FlushPolicy, ObjectCompression, Price, SpoolCap, SpoolFullPolicy, StoreConfig,
};
use promptgate_core::dialect::{Dialect, Endpoint};
use promptgate_core::error::ErrorClass;
use promptgate_core::experiments::decide::Reason;

fn config(log_bodies: bool, redact: &[&str], redaction: Redaction) -> AuditConfig {
    AuditConfig {
        store: StoreConfig::Local {
            root: "unused".into(),
        },
        spool_dir: "unused".into(),
        spool_max: SpoolCap::Bytes(1 << 30),
        on_spool_full: SpoolFullPolicy::Reject,
        durability: Durability::Buffered,
        commit_interval: Duration::from_millis(50),
        flush: FlushPolicy {
            records: 1000,
            bytes: 1 << 20,
            interval: Duration::from_secs(60),
        },
        queue_capacity: 16,
        instance: "gw-\"1\"".into(),
        unit_key_secret: Some(b"secret".to_vec()),
        log_bodies,
        redact: redact.iter().map(|p| JsonPath::parse(p).unwrap()).collect(),
        redaction,
        prices: [(
            "gpt-4o-mini".to_owned(),
            Price {
                input_per_million: 0.15,
                output_per_million: 0.6,
            },
        )]
        .into(),
        compression: ObjectCompression::Gzip,
    }
}

/// Configs that take every way through the encoder: bodies logged or not,
/// no redaction, paths into a body, at a whole body, at scalar fields (by
/// marker and by hash, one field twice), and paths that reach nothing.
fn configs() -> Vec<AuditConfig> {
    vec![
        config(true, &[], Redaction::Marker),
        config(false, &[], Redaction::Marker),
        config(true, &["request.messages[*].content"], Redaction::Marker),
        config(
            true,
            &["response.choices[0].message", "client_id", "latency_ms"],
            Redaction::Hash,
        ),
        config(
            true,
            &["request", "response_text", "response_text", "status"],
            Redaction::Hash,
        ),
        config(
            true,
            &["error_message", "ts_first_byte", "nothing.here", "model.x"],
            Redaction::Marker,
        ),
        config(
            false,
            &["request.messages", "unit_key_hash"],
            Redaction::Hash,
        ),
    ]
}

fn at(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_764_000_000_000 + millis)
}

fn tag(shadow_of: Option<&str>, log_bodies: bool, reason: Reason) -> ExperimentTag {
    ExperimentTag {
        experiment: "greeting".into(),
        assigned_variant: "control".into(),
        served_variant: "friendly \"v2\"".into(),
        assigned_share: shadow_of.is_none().then_some(0.25),
        variant_version: "3f2a".into(),
        reason,
        unit_key: "user-ü-1".into(),
        sticky: shadow_of.is_none(),
        log_bodies,
        shadow_of: shadow_of.map(Arc::from),
    }
}

fn exchanges() -> Vec<FinishedExchange> {
    let pretty_request = "{\n  \"model\": \"gpt-4o-mini\",\n  \"messages\": [{\"role\": \"user\", \"content\": \"Hi \\\"there\\\" \\u00e9 ✓\"}],\n  \"temperature\": 0.5e1\n}";
    let response = r#"{"id":"c1","model":"gpt-4o-mini-2024","choices":[{"message":{"role":"assistant","content":"Hello\nworld"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
    let base = FinishedExchange {
        start: ExchangeStart {
            request_id: "01a21648-f871-71a7-bfde-2d62a4068256".into(),
            client_id: Some("checkout".into()),
            tags: tags("doc_type=invoice, channel=email"),
            config_version: "2ee8446f3446".into(),
            endpoint: Endpoint::ChatCompletions,
            provider: "openai".into(),
            model: "greeting".into(),
            upstream_model: "gpt-4o-mini".into(),
            request_body: bytes::Bytes::from(pretty_request),
            stream: false,
            status: 200,
            attempts: 1,
            started_at: at(123),
            started: Instant::now(),
            head_after: Duration::from_millis(300),
            experiment: Some(tag(None, true, Reason::Hash)),
            trace_id: None,
        },
        first_byte_after: Some(Duration::from_micros(300_456)),
        duration: Duration::from_micros(1_320_987),
        outcome: Outcome::Completed,
        captured: Captured {
            text: "Hello\nworld \u{1}".into(),
            usage: Usage {
                input_tokens: Some(12),
                output_tokens: Some(3),
            },
            body: response.as_bytes().to_vec(),
            truncated: false,
            stream_error: None,
            model: Some("gpt-4o-mini-2024".into()),
        },
    };
    let mut all = vec![base.clone()];
    let mut vary = |change: &dyn Fn(&mut FinishedExchange)| {
        let mut exchange = base.clone();
        change(&mut exchange);
        all.push(exchange);
    };
    vary(&|e| {
        e.start.experiment = None;
        e.start.client_id = None;
        e.start.tags = Default::default();
        e.start.trace_id = Some(
            opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        );
    });
    vary(&|e| {
        e.start.experiment = Some(tag(Some("served-1"), true, Reason::Flag("beta".into())));
        e.start.endpoint = Endpoint::Messages;
        e.start.upstream_model = "claude-x".into();
        e.start.request_body = bytes::Bytes::from_static(br#"{"model":"claude-x","max_tokens":5}"#);
    });
    vary(&|e| e.start.experiment = Some(tag(None, false, Reason::Override)));
    vary(&|e| {
        e.start.stream = true;
        e.first_byte_after = None;
        e.captured.body.clear();
        e.captured.stream_error = Some("overloaded: \"retry\"".into());
    });
    vary(&|e| {
        e.outcome = Outcome::UpstreamBroken("connection reset\tby peer".into());
        e.captured.body = b"<html>not json \xff</html>".to_vec();
        e.captured.truncated = true;
    });
    vary(&|e| {
        e.outcome = Outcome::TimedOut;
        e.captured.usage = Usage::default();
    });
    vary(&|e| {
        e.start.status = 429;
        e.start.attempts = 3;
        e.start.request_body =
            bytes::Bytes::from_static(br#"{"prompt":"x","model":"gpt-4o-mini"}"#);
        e.captured.usage.input_tokens = None;
    });
    vary(&|e| {
        e.start.status = 503;
        e.outcome = Outcome::Abandoned;
        e.start.experiment = Some(tag(None, true, Reason::NotEnrolled));
    });
    vary(&|e| e.outcome = Outcome::ClientDisconnected);
    vary(&|e| e.outcome = Outcome::Cancelled);
    all
}

/// Tags as the gateway parses them from a header.
fn tags(header: &str) -> promptgate_core::tags::Tags {
    let mut config = promptgate_core::tags::TagsConfig::default();
    for key in ["doc_type", "channel"] {
        config.keys.insert(key.into(), Default::default());
    }
    let mut headers = http::HeaderMap::new();
    headers.insert(
        promptgate_core::tags::TAGS_HEADER,
        http::HeaderValue::from_str(header).unwrap(),
    );
    promptgate_core::tags::parse(&headers, &config).unwrap()
}

fn refusals() -> Vec<Refusal> {
    let base = Refusal {
        request_id: "r-1".into(),
        client_id: Some("mobile".into()),
        tags: tags("channel=web"),
        config_version: "v9".into(),
        endpoint: Some(Endpoint::ChatCompletions),
        dialect: Dialect::OpenAi,
        model: Some("greeting".into()),
        stream: false,
        experiment: None,
        status: Some(400),
        kind: RefusalKind::Refused(ErrorClass::BadRequest),
        message: "messages[0].content: expected a \"string\"".into(),
        started_at: at(5),
        duration: Duration::from_micros(812),
        provider: None,
        trace_id: None,
    };
    let mut all = vec![base.clone()];
    let mut vary = |change: &dyn Fn(&mut Refusal)| {
        let mut refusal = base.clone();
        change(&mut refusal);
        all.push(refusal);
    };
    vary(&|r| {
        r.endpoint = None;
        r.dialect = Dialect::Anthropic;
        r.model = None;
        r.client_id = None;
        r.tags = Default::default();
        r.kind = RefusalKind::Refused(ErrorClass::NotFound);
    });
    vary(&|r| {
        r.status = Some(502);
        r.provider = Some("openai".into());
        r.kind = RefusalKind::Refused(ErrorClass::Upstream);
        r.stream = true;
    });
    for kind in [
        RefusalKind::ShadowFailed(ErrorClass::Timeout),
        RefusalKind::ShadowSkipped(SkipReason::Budget),
        RefusalKind::ShadowCancelled,
    ] {
        vary(&|r| {
            r.status = None;
            r.kind = kind;
            r.experiment = Some(tag(Some("served-2"), true, Reason::Killswitch));
        });
    }
    all
}

fn feedbacks() -> Vec<Feedback> {
    let base = Feedback {
        feedback_id: "f-1".into(),
        request_id: "01a21648".into(),
        metric: "thumbs_up".into(),
        value: FeedbackValue::Boolean(true),
        comment: Some("great \"answer\"\n".into()),
        metadata: serde_json::from_str(
            r#"{"page":"checkout","n":[1,2.5,null],"b":{"z":1,"a":true}}"#,
        )
        .unwrap(),
        client_id: Some("web".into()),
        config_version: "v9".into(),
        received_at: at(999),
    };
    let mut number = base.clone();
    number.value = FeedbackValue::Number(0.125);
    number.comment = None;
    number.metadata = None;
    number.client_id = None;
    let mut no = base.clone();
    no.value = FeedbackValue::Boolean(false);
    vec![base, number, no]
}

fn line(record: &Record<'_>) -> String {
    let mut out = Vec::new();
    record.write_line(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn reference_line<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).unwrap()
}

/// The typed encoder writes, for every record kind and every config, the
/// very bytes the map-built encoder wrote.
#[test]
fn typed_records_equal_the_map_built_ones_byte_for_byte() {
    let mut compared = 0;
    for config in configs() {
        let ctx = RecordContext::new(&config, b"unit-key");
        for exchange in exchanges() {
            let typed = line(&from_exchange(&exchange, &ctx));
            let reference = reference_line(&record_reference::from_exchange(&exchange, &ctx));
            assert_eq!(
                typed,
                reference,
                "{exchange:?}\nredact: {:?}",
                config.redact.iter().map(|p| &p.text).collect::<Vec<_>>()
            );
            compared += 1;
        }
        for refusal in refusals() {
            let typed = line(&from_refusal(&refusal, &ctx));
            let reference = reference_line(&record_reference::from_refusal(&refusal, &ctx));
            assert_eq!(typed, reference, "{refusal:?}");
            compared += 1;
        }
        for feedback in feedbacks() {
            let typed = line(&from_feedback(&feedback, &ctx));
            let reference = reference_line(&record_reference::from_feedback(&feedback, &ctx));
            assert_eq!(typed, reference, "{feedback:?}");
            compared += 1;
        }
    }
    assert_eq!(compared, 7 * (11 + 6 + 3));
}

/// What the comparison above rests on: the configs do take the redacting
/// and the raw-body ways (a change that skipped them would show here).
#[test]
fn records_are_redacted_and_bodies_kept_raw() {
    let exchange = &exchanges()[0];
    let plain = config(true, &[], Redaction::Marker);
    let ctx = RecordContext::new(&plain, b"k");
    let text = line(&from_exchange(exchange, &ctx));
    assert!(
        text.ends_with(r#","request":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi \"there\" \u00e9 ✓"}],"temperature":0.5e1},"response":{"id":"c1","model":"gpt-4o-mini-2024","choices":[{"message":{"role":"assistant","content":"Hello\nworld"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}}}"#),
        "{text}"
    );
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["upstream_model"], "gpt-4o-mini");
    assert_eq!(record["cost_usd"], json!(0.0000036));
    assert_eq!(record["ts_start"], "2025-11-24T16:00:00.123Z");
    assert_eq!(record["role"], "served");

    let redacting = config(
        true,
        &["request.messages[*].content", "client_id"],
        Redaction::Marker,
    );
    let ctx = RecordContext::new(&redacting, b"k");
    let record: Value = serde_json::from_str(&line(&from_exchange(exchange, &ctx))).unwrap();
    assert_eq!(record["request"]["messages"][0]["content"], REDACTED);
    assert_eq!(record["request"]["messages"][0]["role"], "user");
    assert_eq!(record["client_id"], REDACTED);
}

#[test]
fn redaction_by_marker_and_hash() {
    let mut value = json!({"request": {"messages": [{"role": "user", "content": "secret 1"}, {"role": "user", "content": "secret 2"}], "metadata": {"email": "a@b.c"}}});
    let path = JsonPath::parse("request.messages[*].content").unwrap();
    redact_at(&mut value, &path.parts, Redaction::Marker);
    assert_eq!(value["request"]["messages"][0]["content"], REDACTED);
    assert_eq!(value["request"]["messages"][1]["content"], REDACTED);
    assert_eq!(value["request"]["messages"][1]["role"], "user");
    let path = JsonPath::parse("request.metadata.email").unwrap();
    redact_at(&mut value, &path.parts, Redaction::Hash);
    assert_eq!(
        value["request"]["metadata"]["email"],
        format!("sha256:{}", hex::encode(Sha256::digest(b"a@b.c")))
    );
    // Paths that do not exist change nothing.
    let before = value.clone();
    redact_at(
        &mut value,
        &JsonPath::parse("request.nothing[*].x").unwrap().parts,
        Redaction::Marker,
    );
    assert_eq!(value, before);
}

#[test]
fn bodies_are_kept_as_one_line_of_the_same_json() {
    let pretty = "{\n  \"model\" : \"gpt-4o\",\n\t\"messages\": [ {\"content\": \"a  b\\n\\\"c\\\" \\\\\" , \"x\": 1.50e2} ],\r\n  \"name\": \"Zoë ✓ \\u00e9\"\n}\n";
    let compact = |body: &str| {
        let plain = config(true, &[], Redaction::Marker);
        let mut exchange = exchanges().remove(0);
        exchange.start.request_body = bytes::Bytes::copy_from_slice(body.as_bytes());
        let ctx = RecordContext::new(&plain, b"k");
        let text = line(&from_exchange(&exchange, &ctx));
        let record: Value = serde_json::from_str(&text).unwrap();
        let start = text.find(",\"request\":").expect("the body kept raw") + 11;
        let end = text.find(",\"response\":").expect("the response after it");
        (text[start..end].to_owned(), record["request"].clone())
    };
    let (text, kept) = compact(pretty);
    assert_eq!(
        text,
        r#"{"model":"gpt-4o","messages":[{"content":"a  b\n\"c\" \\","x":1.50e2}],"name":"Zoë ✓ \u00e9"}"#
    );
    assert_eq!(kept, serde_json::from_str::<Value>(pretty).unwrap());
    // Strings with escaped quotes and backslashes at their ends, and long
    // runs of whitespace between tokens, as the old byte-by-byte loop did.
    for body in [
        r#"  [ "\\" , "\"" ,"a\\\"b",  {"k\\" :"v\"\\"} , 1 ,true, null ]  "#,
        "\"top-level string with \\\" inside\"",
        "{\"deep\":[[[{\"x\":\"\\u0022\\\\\"}]]]}",
    ] {
        let reference = record_reference::compact_json(body.as_bytes()).unwrap();
        assert_eq!(compact(body).0, reference.get(), "{body}");
    }
}

#[test]
fn pseudonyms_are_keyed_and_stable() {
    let pseudonymise =
        |key: &[u8], unit: &str| Pseudonymiser::new(key).of(unit).as_str().to_owned();
    assert_eq!(pseudonymise(b"k1", "alice"), pseudonymise(b"k1", "alice"));
    assert_ne!(pseudonymise(b"k1", "alice"), pseudonymise(b"k2", "alice"));
    assert_ne!(pseudonymise(b"k1", "alice"), pseudonymise(b"k1", "bob"));
    // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?")
    assert_eq!(
        pseudonymise(b"Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c7"
    );
}
