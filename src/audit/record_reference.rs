//! The audit record encoder before the typed one in `record.rs`: each record
//! built as a `serde_json::Map`. Kept, for tests only, as the reference the
//! typed encoder must equal byte for byte (schema v1).

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::exchange::{ExperimentTag, FinishedExchange, Outcome, Refusal};
use crate::feedback::{Feedback, FeedbackValue};
use promptgate_core::config::audit::{AuditConfig, PathPart};
use promptgate_log::time::UtcTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::record::{RecordContext, SCHEMA_VERSION, millis, redact_at};

/// A built record. The request and response bodies, unless a redaction path
/// reaches into them, stay the JSON text they arrived as (checked, and made
/// one line) instead of becoming `Value` trees: parsing two bodies into maps
/// and writing them out again was most of the writer thread's work.
pub struct Record {
    fields: Map<String, Value>,
    bodies: Vec<(&'static str, Box<RawValue>)>,
}

impl From<Map<String, Value>> for Record {
    fn from(fields: Map<String, Value>) -> Record {
        Record {
            fields,
            bodies: Vec::new(),
        }
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len() + self.bodies.len()))?;
        for (key, value) in &self.fields {
            map.serialize_entry(key, value)?;
        }
        for (key, body) in &self.bodies {
            map.serialize_entry(key, body)?;
        }
        map.end()
    }
}

/// The request's `model`, without building a tree of the whole body.
fn upstream_model_of(request_body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly<'a> {
        #[serde(borrow)]
        model: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<ModelOnly<'_>>(request_body)
        .ok()?
        .model
        .map(Cow::into_owned)
}

fn experiment_fields(
    record: &mut Map<String, Value>,
    tag: Option<&ExperimentTag>,
    ctx: &RecordContext<'_>,
) {
    let (experiment, assigned, served, reason, version, unit, sticky, share) = match tag {
        Some(t) => (
            json!(&*t.experiment),
            json!(&*t.assigned_variant),
            json!(&*t.served_variant),
            json!(t.reason.to_string()),
            json!(&*t.variant_version),
            json!(pseudonymise(ctx.unit_key, &t.unit_key)),
            json!(t.sticky),
            json!(t.assigned_share),
        ),
        None => (
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ),
    };
    record.insert("experiment".into(), experiment);
    record.insert("assigned_variant".into(), assigned);
    record.insert("served_variant".into(), served);
    record.insert("assignment_reason".into(), reason);
    record.insert("variant_version".into(), version);
    record.insert("unit_key_hash".into(), unit);
    record.insert("assignment_sticky".into(), sticky);
    record.insert("variant_share".into(), share);
}

/// `role` and `shadow_of`: a shadow call's tag names the served request it copies.
fn role_fields(record: &mut Map<String, Value>, tag: Option<&ExperimentTag>) {
    match tag.and_then(|t| t.shadow_of.as_deref()) {
        Some(served) => {
            record.insert("role".into(), json!("shadow"));
            record.insert("shadow_of".into(), json!(served));
        }
        None => {
            record.insert("role".into(), json!("served"));
            record.insert("shadow_of".into(), Value::Null);
        }
    }
}

/// 32 lower-case hex digits, as in `traceparent` and trace backends.
fn trace_id(id: Option<opentelemetry::trace::TraceId>) -> Value {
    id.map_or(Value::Null, |id| json!(id.to_string()))
}

fn cost(
    ctx: &RecordContext<'_>,
    model: Option<&str>,
    input: Option<u64>,
    output: Option<u64>,
) -> Value {
    model
        .and_then(|m| ctx.config.prices.get(m))
        .and_then(|price| price.cost_usd(input, output))
        .map_or(Value::Null, |usd| json!(usd))
}

pub fn from_exchange(exchange: &FinishedExchange, ctx: &RecordContext<'_>) -> Record {
    let start = &exchange.start;
    let log_bodies =
        ctx.config.log_bodies && start.experiment.as_ref().is_none_or(|t| t.log_bodies);
    let started = UtcTime::from_system(start.started_at);
    let upstream_model = upstream_model_of(&start.request_body);
    let captured = &exchange.captured;
    let status = start.status;
    let error_class = exchange.error_class();
    let error_message = match (&exchange.outcome, error_class) {
        (Outcome::UpstreamBroken(message), _) => json!(message),
        (_, Some("stream_error")) => json!(captured.stream_error),
        _ => Value::Null,
    };
    let mut record = Map::with_capacity(40);
    record.insert("schema_version".into(), json!(SCHEMA_VERSION));
    record.insert("record_type".into(), json!("request"));
    record.insert("request_id".into(), json!(&*start.request_id));
    record.insert("trace_id".into(), trace_id(start.trace_id));
    role_fields(&mut record, start.experiment.as_ref());
    record.insert("ts_start".into(), json!(started.rfc3339_millis()));
    record.insert(
        "ts_first_byte".into(),
        exchange.first_byte_after.map_or(Value::Null, |d| {
            json!(UtcTime::from_system(start.started_at + d).rfc3339_millis())
        }),
    );
    record.insert(
        "ts_end".into(),
        json!(UtcTime::from_system(start.started_at + exchange.duration).rfc3339_millis()),
    );
    record.insert("gateway_instance".into(), json!(ctx.config.instance));
    record.insert("config_version".into(), json!(&*start.config_version));
    record.insert("client_id".into(), json!(start.client_id.as_deref()));
    record.insert("tags".into(), json!(start.tags));
    record.insert("endpoint".into(), json!(start.endpoint.label()));
    record.insert("dialect".into(), json!(start.endpoint.dialect().label()));
    experiment_fields(&mut record, start.experiment.as_ref(), ctx);
    record.insert("provider".into(), json!(&*start.provider));
    record.insert("model".into(), json!(start.model));
    record.insert("upstream_model".into(), json!(upstream_model));
    record.insert("stream".into(), json!(start.stream));
    record.insert("status".into(), json!(status));
    record.insert("outcome".into(), json!(exchange.outcome.label()));
    record.insert("error_class".into(), json!(error_class));
    record.insert("error_message".into(), error_message);
    record.insert("attempts".into(), json!(start.attempts));
    record.insert("latency_ms".into(), json!(millis(exchange.duration)));
    record.insert(
        "ttfb_ms".into(),
        exchange
            .first_byte_after
            .map_or(Value::Null, |d| json!(millis(d))),
    );
    record.insert("input_tokens".into(), json!(captured.usage.input_tokens));
    record.insert("output_tokens".into(), json!(captured.usage.output_tokens));
    record.insert(
        "cost_usd".into(),
        cost(
            ctx,
            upstream_model.as_deref(),
            captured.usage.input_tokens,
            captured.usage.output_tokens,
        ),
    );
    record.insert("bodies_logged".into(), json!(log_bodies));
    let mut bodies = Vec::new();
    if log_bodies {
        // A body a redaction path reaches into is parsed so it can be
        // edited; any other is kept as the text it was.
        let redacted_inside = |field: &str| {
            ctx.config
                .redact
                .iter()
                .any(|path| matches!(path.parts.first(), Some(PathPart::Key(key)) if key == field))
        };
        let mut body = |field: &'static str, bytes: &[u8], not_json: fn(&[u8]) -> Value| {
            if !redacted_inside(field)
                && let Some(raw) = compact_json(bytes)
            {
                bodies.push((field, raw));
                return;
            }
            let value = serde_json::from_slice(bytes).unwrap_or_else(|_| not_json(bytes));
            record.insert(field.into(), value);
        };
        body("request", &start.request_body, |_| Value::Null);
        if captured.body.is_empty() {
            record.insert("response".into(), Value::Null);
        } else {
            body("response", &captured.body, |bytes| {
                Value::String(String::from_utf8_lossy(bytes).into_owned())
            });
        }
        record.insert("response_text".into(), json!(captured.text));
        record.insert("response_truncated".into(), json!(captured.truncated));
    } else {
        for field in ["request", "response", "response_text", "response_truncated"] {
            record.insert(field.into(), Value::Null);
        }
    }
    redact(&mut record, ctx.config);
    Record {
        fields: record,
        bodies,
    }
}

pub fn from_refusal(refusal: &Refusal, ctx: &RecordContext<'_>) -> Record {
    let started = UtcTime::from_system(refusal.started_at);
    let mut record = Map::with_capacity(40);
    record.insert("schema_version".into(), json!(SCHEMA_VERSION));
    record.insert("record_type".into(), json!("request"));
    record.insert("request_id".into(), json!(&*refusal.request_id));
    record.insert("trace_id".into(), trace_id(refusal.trace_id));
    role_fields(&mut record, refusal.experiment.as_ref());
    record.insert("ts_start".into(), json!(started.rfc3339_millis()));
    record.insert("ts_first_byte".into(), Value::Null);
    record.insert(
        "ts_end".into(),
        json!(UtcTime::from_system(refusal.started_at + refusal.duration).rfc3339_millis()),
    );
    record.insert("gateway_instance".into(), json!(ctx.config.instance));
    record.insert("config_version".into(), json!(&*refusal.config_version));
    record.insert("client_id".into(), json!(refusal.client_id.as_deref()));
    record.insert("tags".into(), json!(refusal.tags));
    record.insert(
        "endpoint".into(),
        json!(refusal.endpoint.map(|e| e.label())),
    );
    record.insert("dialect".into(), json!(refusal.dialect.label()));
    experiment_fields(&mut record, refusal.experiment.as_ref(), ctx);
    record.insert("provider".into(), json!(refusal.provider));
    record.insert("model".into(), json!(refusal.model));
    record.insert("upstream_model".into(), Value::Null);
    record.insert("stream".into(), json!(refusal.stream));
    record.insert("status".into(), json!(refusal.status));
    record.insert("outcome".into(), json!(refusal.kind.outcome_label()));
    record.insert("error_class".into(), json!(refusal.kind.class_label()));
    record.insert("error_message".into(), json!(refusal.message));
    record.insert("attempts".into(), json!(0));
    record.insert("latency_ms".into(), json!(millis(refusal.duration)));
    record.insert("ttfb_ms".into(), Value::Null);
    record.insert("input_tokens".into(), Value::Null);
    record.insert("output_tokens".into(), Value::Null);
    record.insert("cost_usd".into(), Value::Null);
    record.insert("bodies_logged".into(), json!(false));
    for field in ["request", "response", "response_text", "response_truncated"] {
        record.insert(field.into(), Value::Null);
    }
    redact(&mut record, ctx.config);
    record.into()
}

/// A feedback record (its own table: `<prefix>/feedback/v1/`). The value has
/// typed columns so every engine infers one type: `value_number` always (a
/// boolean as 0 or 1, so means are proportions), `value_bool` for booleans.
pub fn from_feedback(feedback: &Feedback, ctx: &RecordContext<'_>) -> Record {
    let (value_bool, value_number) = match feedback.value {
        FeedbackValue::Boolean(b) => (json!(b), json!(if b { 1.0 } else { 0.0 })),
        FeedbackValue::Number(x) => (Value::Null, json!(x)),
    };
    let mut record = Map::with_capacity(16);
    record.insert("schema_version".into(), json!(SCHEMA_VERSION));
    record.insert("record_type".into(), json!("feedback"));
    record.insert("feedback_id".into(), json!(&*feedback.feedback_id));
    record.insert("request_id".into(), json!(feedback.request_id));
    record.insert(
        "ts_received".into(),
        json!(UtcTime::from_system(feedback.received_at).rfc3339_millis()),
    );
    record.insert("gateway_instance".into(), json!(ctx.config.instance));
    record.insert("config_version".into(), json!(&*feedback.config_version));
    record.insert("client_id".into(), json!(feedback.client_id.as_deref()));
    record.insert("metric".into(), json!(feedback.metric));
    record.insert("value_type".into(), json!(feedback.value.kind().label()));
    record.insert("value_bool".into(), value_bool);
    record.insert("value_number".into(), value_number);
    record.insert("comment".into(), json!(feedback.comment));
    record.insert(
        "metadata".into(),
        feedback.metadata.clone().map_or(Value::Null, Value::Object),
    );
    record.into()
}

/// Replaces every value at the configured paths, before anything is written.
fn redact(record: &mut Map<String, Value>, config: &AuditConfig) {
    for path in &config.redact {
        let mut root = Value::Object(std::mem::take(record));
        redact_at(&mut root, &path.parts, config.redaction);
        if let Value::Object(map) = root {
            *record = map;
        }
    }
}

/// `body` as one line of JSON, the whitespace between its tokens dropped (a
/// pretty-printed answer would otherwise break the JSON Lines framing);
/// `None` when it is not JSON.
pub(super) fn compact_json(body: &[u8]) -> Option<Box<RawValue>> {
    let raw: &RawValue = serde_json::from_slice(body).ok()?;
    let mut compact = Vec::with_capacity(raw.get().len());
    let (mut in_string, mut escaped) = (false, false);
    // Bytes, not chars: no byte of a multi-byte UTF-8 character is ASCII, so
    // whitespace and quotes are found exactly.
    for &byte in raw.get().as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            continue;
        }
        compact.push(byte);
    }
    RawValue::from_string(String::from_utf8(compact).ok()?).ok()
}

fn pseudonymise(key: &[u8], unit: &str) -> String {
    // HMAC takes keys of any length, so this never fails; an empty pseudonym
    // (never the raw key) would be the answer if it did.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(unit.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}
