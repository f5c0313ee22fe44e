//! One audit record per request attempt (schema v1, documented field by field
//! in docs/audit-schema.md). Built on the writer thread, off the request path.
//!
//! A record is a typed view that borrows the exchange (or refusal, or
//! feedback) and is written straight into the line (`json_line.rs`): no map
//! of ~40 owned keys and values is built per record, and no body is copied
//! before it is written. Fields are written in the order schema-v1 lines
//! have always had (keys sorted, as a `serde_json::Map` wrote them; bodies
//! kept as their own JSON text last), so every line is byte for byte what
//! the map-built encoder wrote (`record_reference.rs`, the tests).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::json_line::{CompactRaw, Displayed, JsonValue, Timestamp};
use crate::exchange::{ExperimentTag, FinishedExchange, Outcome, Refusal};
use crate::feedback::{Feedback, FeedbackValue};
use promptgate_core::config::audit::{AuditConfig, JsonPath, PathPart, Redaction};
use promptgate_log::time::UtcTime;

pub const SCHEMA_VERSION: u32 = 1;
const REDACTED: &str = "[redacted]";

/// Everything the record builder needs besides the event.
pub struct RecordContext<'a> {
    pub config: &'a AuditConfig,
    /// The HMAC key of unit-key pseudonyms.
    pub unit_key: &'a [u8],
    pseudonyms: Pseudonymiser,
}

impl<'a> RecordContext<'a> {
    pub fn new(config: &'a AuditConfig, unit_key: &'a [u8]) -> RecordContext<'a> {
        RecordContext {
            config,
            unit_key,
            pseudonyms: Pseudonymiser::new(unit_key),
        }
    }
}

/// HMAC-SHA256 keyed once: each pseudonym then hashes its unit key only, not
/// the key's two padded blocks again (half the hashing of a record).
pub(super) struct Pseudonymiser(Option<Hmac<Sha256>>);

impl Pseudonymiser {
    pub(super) fn new(key: &[u8]) -> Pseudonymiser {
        // HMAC takes keys of any length, so this is always `Some`; an empty
        // pseudonym (never the raw key) would be the answer if it were not.
        Pseudonymiser(<Hmac<Sha256> as Mac>::new_from_slice(key).ok())
    }

    /// The first 16 bytes of the HMAC of `unit`, as 32 hex digits.
    pub(super) fn of(&self, unit: &str) -> Pseudonym {
        let mut pseudonym = Pseudonym {
            hex: [0; 32],
            len: 0,
        };
        if let Some(keyed) = &self.0 {
            let mut mac = keyed.clone();
            mac.update(unit.as_bytes());
            if hex::encode_to_slice(&mac.finalize().into_bytes()[..16], &mut pseudonym.hex).is_ok()
            {
                pseudonym.len = pseudonym.hex.len();
            }
        }
        pseudonym
    }
}

/// A pseudonym's hex digits, kept on the stack.
pub(super) struct Pseudonym {
    hex: [u8; 32],
    len: usize,
}

impl Pseudonym {
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex[..self.len]).unwrap_or_default()
    }
}

impl Serialize for Pseudonym {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl JsonValue for Pseudonym {
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.as_str().write_json(out)
    }
}

/// A built record, ready to serialise as one JSON line.
pub enum Record<'a> {
    Request(Box<RequestRecord<'a>>),
    Feedback(FeedbackRecord<'a>),
}

impl Record<'_> {
    /// Appends the record as one JSON line, without its newline.
    pub fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Record::Request(record) => record.write_line(out),
            Record::Feedback(record) => serde_json::to_writer(out, record),
        }
    }
}

/// A request or response body. Unless a redaction path reaches into it, it
/// stays the JSON text it arrived as (checked, and made one line) instead of
/// becoming a `Value` tree: parsing two bodies into maps and writing them out
/// again was most of the writer thread's work.
enum Body<'a> {
    /// Checked, borrowed from the exchange, made one line as it is written;
    /// written after every other field.
    Raw(&'a RawValue),
    /// Written in its place among the fields (`null` included).
    Tree(Value),
}

/// The experiment columns of a request record.
struct Assignment<'a> {
    tag: &'a ExperimentTag,
    unit_key_hash: Pseudonym,
}

/// A request record: a served request's or a shadow call's exchange, or a
/// request that got no provider answer.
pub struct RequestRecord<'a> {
    request_id: &'a str,
    trace_id: Option<opentelemetry::trace::TraceId>,
    /// The request a shadow call copies; `role` is `shadow` when set.
    shadow_of: Option<&'a str>,
    ts_start: UtcTime,
    ts_first_byte: Option<UtcTime>,
    ts_end: UtcTime,
    gateway_instance: &'a str,
    config_version: &'a str,
    client_id: Option<&'a str>,
    tags: &'a promptgate_core::tags::Tags,
    endpoint: Option<&'static str>,
    dialect: &'static str,
    assignment: Option<Assignment<'a>>,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    upstream_model: Option<&'a str>,
    stream: bool,
    status: Option<u16>,
    outcome: &'static str,
    error_class: Option<&'static str>,
    error_message: Option<&'a str>,
    attempts: u32,
    latency_ms: f64,
    ttfb_ms: Option<f64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    bodies_logged: bool,
    request: Body<'a>,
    response: Body<'a>,
    response_text: Option<&'a str>,
    response_truncated: Option<bool>,
    redact: &'a [JsonPath],
    redaction: Redaction,
}

/// A feedback record (its own table: `<prefix>/feedback/v1/`). The value has
/// typed columns so every engine infers one type: `value_number` always (a
/// boolean as 0 or 1, so means are proportions), `value_bool` for booleans.
pub struct FeedbackRecord<'a> {
    feedback: &'a Feedback,
    ts_received: UtcTime,
    gateway_instance: &'a str,
}

pub(super) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn assignment<'a>(
    tag: Option<&'a ExperimentTag>,
    ctx: &RecordContext<'_>,
) -> Option<Assignment<'a>> {
    tag.map(|tag| Assignment {
        tag,
        unit_key_hash: ctx.pseudonyms.of(&tag.unit_key),
    })
}

fn cost(
    ctx: &RecordContext<'_>,
    model: Option<&str>,
    input: Option<u64>,
    output: Option<u64>,
) -> Option<f64> {
    model
        .and_then(|m| ctx.config.prices.get(m))
        .and_then(|price| price.cost_usd(input, output))
}

/// Whether a redaction path starts at the record's field `field`.
fn redacted_inside(config: &AuditConfig, field: &str) -> bool {
    config
        .redact
        .iter()
        .any(|path| matches!(path.parts.first(), Some(PathPart::Key(key)) if key == field))
}

pub fn from_exchange<'a>(exchange: &'a FinishedExchange, ctx: &RecordContext<'a>) -> Record<'a> {
    let start = &exchange.start;
    let config = ctx.config;
    let log_bodies = config.log_bodies && start.experiment.as_ref().is_none_or(|t| t.log_bodies);
    let captured = &exchange.captured;
    let error_class = exchange.error_class();
    let error_message = match (&exchange.outcome, error_class) {
        (Outcome::UpstreamBroken(message), _) => Some(message.as_str()),
        (_, Some("stream_error")) => captured.stream_error.as_deref(),
        _ => None,
    };
    // A body a redaction path reaches into is parsed so it can be edited;
    // any other is kept as the text it was.
    let body = |field: &str, bytes: &'a [u8], not_json: fn(&[u8]) -> Value| {
        if !redacted_inside(config, field)
            && let Ok(raw) = serde_json::from_slice::<&RawValue>(bytes)
        {
            return Body::Raw(raw);
        }
        Body::Tree(serde_json::from_slice(bytes).unwrap_or_else(|_| not_json(bytes)))
    };
    let (request, response) = match log_bodies {
        false => (Body::Tree(Value::Null), Body::Tree(Value::Null)),
        true => (
            body("request", &start.request_body, |_| Value::Null),
            match captured.body.is_empty() {
                true => Body::Tree(Value::Null),
                false => body("response", &captured.body, |bytes| {
                    Value::String(String::from_utf8_lossy(bytes).into_owned())
                }),
            },
        ),
    };
    let upstream_model = Some(start.upstream_model.as_str());
    let (input_tokens, output_tokens) = (captured.usage.input_tokens, captured.usage.output_tokens);
    Record::Request(Box::new(RequestRecord {
        request_id: &start.request_id,
        trace_id: start.trace_id,
        shadow_of: start
            .experiment
            .as_ref()
            .and_then(|t| t.shadow_of.as_deref()),
        ts_start: UtcTime::from_system(start.started_at),
        ts_first_byte: exchange
            .first_byte_after
            .map(|d| UtcTime::from_system(start.started_at + d)),
        ts_end: UtcTime::from_system(start.started_at + exchange.duration),
        gateway_instance: &config.instance,
        config_version: &start.config_version,
        client_id: start.client_id.as_deref(),
        tags: &start.tags,
        endpoint: Some(start.endpoint.label()),
        dialect: start.endpoint.dialect().label(),
        assignment: assignment(start.experiment.as_ref(), ctx),
        provider: Some(&start.provider),
        model: Some(&start.model),
        upstream_model,
        stream: start.stream,
        status: Some(start.status),
        outcome: exchange.outcome.label(),
        error_class,
        error_message,
        attempts: start.attempts,
        latency_ms: millis(exchange.duration),
        ttfb_ms: exchange.first_byte_after.map(millis),
        input_tokens,
        output_tokens,
        cost_usd: cost(ctx, upstream_model, input_tokens, output_tokens),
        bodies_logged: log_bodies,
        request,
        response,
        response_text: log_bodies.then_some(captured.text.as_str()),
        response_truncated: log_bodies.then_some(captured.truncated),
        redact: &config.redact,
        redaction: config.redaction,
    }))
}

pub fn from_refusal<'a>(refusal: &'a Refusal, ctx: &RecordContext<'a>) -> Record<'a> {
    Record::Request(Box::new(RequestRecord {
        request_id: &refusal.request_id,
        trace_id: refusal.trace_id,
        shadow_of: refusal
            .experiment
            .as_ref()
            .and_then(|t| t.shadow_of.as_deref()),
        ts_start: UtcTime::from_system(refusal.started_at),
        ts_first_byte: None,
        ts_end: UtcTime::from_system(refusal.started_at + refusal.duration),
        gateway_instance: &ctx.config.instance,
        config_version: &refusal.config_version,
        client_id: refusal.client_id.as_deref(),
        tags: &refusal.tags,
        endpoint: refusal.endpoint.map(|e| e.label()),
        dialect: refusal.dialect.label(),
        assignment: assignment(refusal.experiment.as_ref(), ctx),
        provider: refusal.provider.as_deref(),
        model: refusal.model.as_deref(),
        upstream_model: None,
        stream: refusal.stream,
        status: refusal.status,
        outcome: refusal.kind.outcome_label(),
        error_class: Some(refusal.kind.class_label()),
        error_message: Some(&refusal.message),
        attempts: 0,
        latency_ms: millis(refusal.duration),
        ttfb_ms: None,
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        bodies_logged: false,
        request: Body::Tree(Value::Null),
        response: Body::Tree(Value::Null),
        response_text: None,
        response_truncated: None,
        redact: &ctx.config.redact,
        redaction: ctx.config.redaction,
    }))
}

pub fn from_feedback<'a>(feedback: &'a Feedback, ctx: &RecordContext<'a>) -> Record<'a> {
    Record::Feedback(FeedbackRecord {
        feedback,
        ts_received: UtcTime::from_system(feedback.received_at),
        gateway_instance: &ctx.config.instance,
    })
}

/// Writes an object's entries into a line, each replaced first where a
/// redaction path of the config reaches it (only fields such a path names
/// take the slow way, a `Value` copy).
struct Fields<'o, 'r> {
    out: &'o mut Vec<u8>,
    redact: &'r [JsonPath],
    redaction: Redaction,
    written: bool,
}

impl Fields<'_, '_> {
    fn key(&mut self, key: &str) {
        self.out.push(if self.written { b',' } else { b'{' });
        self.written = true;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn entry<T: JsonValue + Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> serde_json::Result<()> {
        self.key(key);
        let mut paths = self
            .redact
            .iter()
            .filter(|path| matches!(path.parts.first(), Some(PathPart::Key(k)) if k == key))
            .peekable();
        if paths.peek().is_none() {
            return value.write_json(self.out);
        }
        let mut value = serde_json::to_value(value)?;
        for path in paths {
            redact_at(&mut value, &path.parts[1..], self.redaction);
        }
        serde_json::to_writer(&mut *self.out, &value)
    }

    /// A body kept as its text: no redaction path reaches into it.
    fn raw_entry(&mut self, key: &str, raw: &RawValue) -> serde_json::Result<()> {
        self.key(key);
        CompactRaw(raw).write_json(self.out)
    }

    fn end(self) {
        self.out
            .extend_from_slice(if self.written { b"}" } else { b"{}" });
    }
}

fn timestamp(time: UtcTime) -> Timestamp {
    Timestamp(time)
}

impl RequestRecord<'_> {
    fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let tag = self.assignment.as_ref().map(|a| a.tag);
        let mut e = Fields {
            out,
            redact: self.redact,
            redaction: self.redaction,
            written: false,
        };
        // Keys in sorted order, as schema-v1 lines have them.
        e.entry("assigned_variant", &tag.map(|t| &*t.assigned_variant))?;
        e.entry("assignment_reason", &tag.map(|t| Displayed(&t.reason)))?;
        e.entry("assignment_sticky", &tag.map(|t| t.sticky))?;
        e.entry("attempts", &self.attempts)?;
        e.entry("bodies_logged", &self.bodies_logged)?;
        e.entry("client_id", &self.client_id)?;
        e.entry("config_version", self.config_version)?;
        e.entry("cost_usd", &self.cost_usd)?;
        e.entry("dialect", self.dialect)?;
        e.entry("endpoint", &self.endpoint)?;
        e.entry("error_class", &self.error_class)?;
        e.entry("error_message", &self.error_message)?;
        e.entry("experiment", &tag.map(|t| &*t.experiment))?;
        e.entry("gateway_instance", self.gateway_instance)?;
        e.entry("input_tokens", &self.input_tokens)?;
        e.entry("latency_ms", &self.latency_ms)?;
        e.entry("model", &self.model)?;
        e.entry("outcome", self.outcome)?;
        e.entry("output_tokens", &self.output_tokens)?;
        e.entry("provider", &self.provider)?;
        e.entry("record_type", "request")?;
        if let Body::Tree(request) = &self.request {
            e.entry("request", request)?;
        }
        e.entry("request_id", self.request_id)?;
        if let Body::Tree(response) = &self.response {
            e.entry("response", response)?;
        }
        e.entry("response_text", &self.response_text)?;
        e.entry("response_truncated", &self.response_truncated)?;
        e.entry(
            "role",
            if self.shadow_of.is_some() {
                "shadow"
            } else {
                "served"
            },
        )?;
        e.entry("schema_version", &SCHEMA_VERSION)?;
        e.entry("served_variant", &tag.map(|t| &*t.served_variant))?;
        e.entry("shadow_of", &self.shadow_of)?;
        e.entry("status", &self.status)?;
        e.entry("stream", &self.stream)?;
        e.entry("tags", self.tags)?;
        // 32 lower-case hex digits, as in `traceparent` and trace backends.
        e.entry("trace_id", &self.trace_id.map(Displayed))?;
        e.entry("ts_end", &timestamp(self.ts_end))?;
        e.entry("ts_first_byte", &self.ts_first_byte.map(timestamp))?;
        e.entry("ts_start", &timestamp(self.ts_start))?;
        e.entry("ttfb_ms", &self.ttfb_ms)?;
        e.entry(
            "unit_key_hash",
            &self.assignment.as_ref().map(|a| &a.unit_key_hash),
        )?;
        e.entry("upstream_model", &self.upstream_model)?;
        e.entry("variant_share", &tag.and_then(|t| t.assigned_share))?;
        e.entry("variant_version", &tag.map(|t| &*t.variant_version))?;
        for (key, body) in [("request", &self.request), ("response", &self.response)] {
            if let Body::Raw(raw) = body {
                e.raw_entry(key, raw)?;
            }
        }
        e.end();
        Ok(())
    }
}

impl Serialize for FeedbackRecord<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let feedback = self.feedback;
        let (value_bool, value_number) = match feedback.value {
            FeedbackValue::Boolean(b) => (Some(b), if b { 1.0 } else { 0.0 }),
            FeedbackValue::Number(x) => (None, x),
        };
        let mut map = serializer.serialize_map(None)?;
        // Keys in sorted order, as schema-v1 lines have them.
        map.serialize_entry("client_id", &feedback.client_id.as_deref())?;
        map.serialize_entry("comment", &feedback.comment)?;
        map.serialize_entry("config_version", &*feedback.config_version)?;
        map.serialize_entry("feedback_id", &*feedback.feedback_id)?;
        map.serialize_entry("gateway_instance", self.gateway_instance)?;
        map.serialize_entry("metadata", &feedback.metadata)?;
        map.serialize_entry("metric", &feedback.metric)?;
        map.serialize_entry("record_type", "feedback")?;
        map.serialize_entry("request_id", &feedback.request_id)?;
        map.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        map.serialize_entry("ts_received", &timestamp(self.ts_received))?;
        map.serialize_entry("value_bool", &value_bool)?;
        map.serialize_entry("value_number", &value_number)?;
        map.serialize_entry("value_type", feedback.value.kind().label())?;
        map.end()
    }
}

pub(super) fn redact_at(value: &mut Value, parts: &[PathPart], how: Redaction) {
    let Some((first, rest)) = parts.split_first() else {
        if !value.is_null() {
            let replacement = match how {
                Redaction::Marker => json!(REDACTED),
                Redaction::Hash => {
                    let text = match &*value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!(format!(
                        "sha256:{}",
                        hex::encode(Sha256::digest(text.as_bytes()))
                    ))
                }
            };
            *value = replacement;
        }
        return;
    };
    match (first, value) {
        (PathPart::Key(key), Value::Object(map)) => {
            if let Some(child) = map.get_mut(key) {
                redact_at(child, rest, how);
            }
        }
        (PathPart::AnyIndex, Value::Array(items)) => {
            for item in items {
                redact_at(item, rest, how);
            }
        }
        (PathPart::Index(i), Value::Array(items)) => {
            if let Some(item) = items.get_mut(*i) {
                redact_at(item, rest, how);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
