//! Micro-benchmarks of the per-request hot path: variant assignment, template
//! rendering, applying a variant to a body, reading a request head, and SSE
//! decoding with usage capture. Run: `cargo bench --bench hot_path`.

// Benchmark set-up: a failed unwrap is a broken benchmark, not a gateway panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use promptgate::capture::ResponseCapture;
use promptgate_core::config::{self, LoadOptions};
use promptgate_core::dialect::{Endpoint, parse_head};
use promptgate_core::experiments::assign;
use promptgate_core::experiments::body::BodyFields;
use promptgate_core::experiments::decide::{self, RequestFacts};
use promptgate_core::experiments::render::{self, Variables};
use promptgate_core::experiments::template::Template;
use serde_json::Value;

const CHAT: &[u8] = br#"{"model":"greeting","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Summarise the plot of Hamlet in one sentence, please."}],"temperature":0.3,"stream":false,"promptgate":{"variables":{"audience":"students","bullets":3}}}"#;

fn assignment(c: &mut Criterion) {
    let mut group = c.benchmark_group("assignment");
    group.bench_function("choose_variant/2", |b| {
        b.iter(|| {
            assign::choose_variant(
                black_box("greeting"),
                black_box("user-12345"),
                [("control", 50.0), ("friendly", 50.0)],
            )
        })
    });
    group.bench_function("choose_variant/3", |b| {
        b.iter(|| {
            assign::choose_variant(
                black_box("greeting"),
                black_box("user-12345"),
                [("control", 50.0), ("friendly", 30.0), ("terse", 20.0)],
            )
        })
    });
    group.bench_function("is_enrolled", |b| {
        b.iter(|| assign::is_enrolled(black_box("greeting"), black_box("user-12345"), 80.0))
    });
    group.finish();
}

fn templates(c: &mut Criterion) {
    let template = Template::parse(
        "Summarise for {{audience}} in at most {{bullets}} bullet points. Text: {{input}}",
    )
    .unwrap();
    let vars = [
        ("audience", "students"),
        ("bullets", "3"),
        (
            "input",
            "Summarise the plot of Hamlet in one sentence, please.",
        ),
    ];
    c.bench_function("template/render", |b| {
        b.iter(|| template.render(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)))
    });
}

/// A realistic chat body of at least `size` bytes: a system prompt, then
/// turns of user and assistant messages (some with content parts, escapes and
/// non-ASCII text), sampling parameters and a field the gateway does not know.
fn chat_body(size: usize) -> Vec<u8> {
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a careful assistant for a bookshop. Answer in the customer's language; cite titles in \"quotes\"."}),
    ];
    let mut turn = 0;
    while serde_json::to_vec(&messages).unwrap().len() < size {
        turn += 1;
        messages.push(serde_json::json!({"role": "user", "content": [
            {"type": "text", "text": format!("Turn {turn}: which edition of « Hamlet » would you recommend for a first reading, and why? Keep it short.")}
        ]}));
        messages.push(serde_json::json!({"role": "assistant", "content": format!("For turn {turn}: the Arden edition — its notes explain archaic words without breaking the flow.\nThe Folger one is cheaper.")}));
    }
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o-mini", "messages": messages, "temperature": 0.3, "max_tokens": 300,
        "stream": true, "stream_options": {"include_usage": true}, "user": "customer-8812"
    }))
    .unwrap()
}

/// What `parse_head` did before it checked the fields the gateway reads:
/// `model` and `stream`, the rest skipped unchecked (the path always tracked).
fn head_unchecked(body: &[u8]) -> (Option<String>, Option<bool>) {
    #[derive(serde::Deserialize)]
    struct Head {
        model: Option<String>,
        stream: Option<bool>,
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let head: Head = serde_path_to_error::deserialize(&mut deserializer).unwrap();
    deserializer.end().unwrap();
    (head.model, head.stream)
}

fn request_head(c: &mut Criterion) {
    c.bench_function("parse_head/chat", |b| {
        b.iter(|| parse_head(Endpoint::ChatCompletions, black_box(CHAT)))
    });
    // The passthrough cost of checking the body: the checked read against the
    // unchecked one it replaced and against building a tree, in the same run.
    for size in [2 << 10, 20 << 10] {
        let body = chat_body(size);
        let mut group = c.benchmark_group(format!("request_check/chat_{}KiB", size >> 10));
        group.throughput(criterion::Throughput::Bytes(body.len() as u64));
        group.bench_function("unchecked_head", |b| {
            b.iter(|| head_unchecked(black_box(&body)))
        });
        group.bench_function("checked_parse_head", |b| {
            b.iter(|| parse_head(Endpoint::ChatCompletions, black_box(&body)).unwrap())
        });
        group.bench_function("value_tree", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).unwrap())
        });
        group.finish();
    }
}

fn sse_capture(c: &mut Criterion) {
    let mut stream = String::new();
    for i in 0..50 {
        stream.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    stream.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":50}}\n\ndata: [DONE]\n\n");
    let bytes = stream.into_bytes();
    let mut group = c.benchmark_group("sse_capture");
    group.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
    group.bench_function("openai_50_chunks/reads_of_4KiB", |b| {
        b.iter(|| {
            let mut capture = ResponseCapture::new(Endpoint::ChatCompletions, true);
            for piece in bytes.chunks(4096) {
                capture
                    .observe(piece)
                    .expect("the benchmark's events are small");
            }
            capture.finish()
        })
    });
    group.bench_function("openai_50_chunks/reads_of_64B", |b| {
        b.iter(|| {
            let mut capture = ResponseCapture::new(Endpoint::ChatCompletions, true);
            for piece in bytes.chunks(64) {
                capture
                    .observe(piece)
                    .expect("the benchmark's events are small");
            }
            capture.finish()
        })
    });
    group.finish();
}

/// The whole experiment phase minus I/O: parse the body, decide, render, serialise.
fn experiment_phase(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.toml");
    std::fs::write(
        &path,
        r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[experiments.greeting]
unit_key = { header = "x-user-id" }
[[experiments.greeting.variants]]
name = "control"
weight = 50
model = "demo-a"
providers = ["demo"]
system = "You are a concise assistant for {{audience}}."
params = { temperature = 0.2, max_tokens = 200 }
[[experiments.greeting.variants]]
name = "bullets"
weight = 50
model = "demo-b"
providers = ["demo"]
system = "Answer {{audience}} in at most {{bullets}} bullet points."
messages = "prepend"
user = "Be precise."
"#,
    )
    .unwrap();
    let config = config::load_file(&path, &LoadOptions::default()).unwrap();
    let experiment = &config.experiments[0];
    let mut headers = HeaderMap::new();
    headers.insert("x-user-id", HeaderValue::from_static("user-12345"));
    c.bench_function("experiment/parse_decide_render_serialise", |b| {
        b.iter(|| {
            let fields = BodyFields::parse(black_box(CHAT)).unwrap();
            let assignment = decide::decide(
                experiment,
                &RequestFacts {
                    headers: &headers,
                    client_id: None,
                    model: "greeting",
                    body: &fields,
                    request_id: "r",
                },
            )
            .unwrap();
            let variables = Variables::of(&fields, Endpoint::ChatCompletions).unwrap();
            render::apply(
                experiment,
                &experiment.variants[assignment.variant],
                Endpoint::ChatCompletions,
                &fields,
                &variables,
            )
            .unwrap()
            .to_vec()
            .unwrap()
        })
    });
    c.bench_function("experiment/baseline_parse_serialise", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(CHAT)).unwrap();
            serde_json::to_vec(&value).unwrap()
        })
    });
}

/// Audit records per second on one core: build the record from an exchange,
/// serialise it as a JSON line; and compress lines into an object (gzip at
/// levels 6 and 1, zstd at 3).
fn audit_encoding(c: &mut Criterion) {
    use promptgate::audit::record::{self, RecordContext};
    use promptgate::exchange::{
        Captured, ExchangeStart, ExperimentTag, FinishedExchange, Outcome, Usage,
    };
    use promptgate_core::config::audit::*;
    use std::io::Write;
    use std::time::{Duration, Instant, SystemTime};

    let config = AuditConfig {
        store: StoreConfig::Local {
            root: "unused".into(),
        },
        spool_dir: "unused".into(),
        spool_max: SpoolCap::Bytes(1 << 30),
        on_spool_full: SpoolFullPolicy::Reject,
        durability: Durability::Buffered,
        commit_interval: Duration::from_millis(50),
        flush: FlushPolicy {
            records: 100_000,
            bytes: 64 << 20,
            interval: Duration::from_secs(300),
        },
        queue_capacity: 65_536,
        instance: "bench-1".into(),
        unit_key_secret: Some(b"secret".to_vec()),
        log_bodies: true,
        redact: vec![JsonPath::parse("request.metadata.email").unwrap()],
        redaction: Redaction::Marker,
        prices: [(
            "demo-a".to_owned(),
            Price {
                input_per_million: 0.15,
                output_per_million: 0.6,
            },
        )]
        .into(),
        compression: ObjectCompression::Gzip,
    };
    let text = "Hamlet, Prince of Denmark, seeks revenge on his uncle Claudius, who murdered Hamlet's father to seize the throne.";
    let response = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}], "usage": {"prompt_tokens": 27, "completion_tokens": 34}});
    let exchange = FinishedExchange {
        start: ExchangeStart {
            request_id: "01a21648-f871-71a7-bfde-2d62a4068256".into(),
            client_id: Some("checkout".into()),
            tags: Default::default(),
            config_version: "2ee8446f3446".into(),
            endpoint: Endpoint::ChatCompletions,
            provider: "openai".into(),
            model: "greeting".into(),
            upstream_model: "greeting".into(),
            request_body: bytes::Bytes::from_static(CHAT),
            stream: false,
            status: 200,
            attempts: 1,
            started_at: SystemTime::now(),
            started: Instant::now(),
            head_after: Duration::from_millis(300),
            trace_id: None,
            experiment: Some(ExperimentTag {
                experiment: "greeting".into(),
                assigned_variant: "control".into(),
                served_variant: "control".into(),
                assigned_share: Some(0.5),
                variant_version: "v3".into(),
                reason: promptgate_core::experiments::decide::Reason::Hash,
                unit_key: "user-12345".into(),
                sticky: true,
                log_bodies: true,
                shadow_of: None,
            }),
        },
        first_byte_after: Some(Duration::from_millis(300)),
        duration: Duration::from_millis(320),
        outcome: Outcome::Completed,
        captured: Captured {
            text: text.into(),
            usage: Usage {
                input_tokens: Some(27),
                output_tokens: Some(34),
            },
            body: response.to_string().into_bytes(),
            truncated: false,
            stream_error: None,
            model: Some("gpt-4o-mini-2024-07-18".into()),
        },
    };
    let ctx = RecordContext::new(&config, b"secret");
    let mut group = c.benchmark_group("audit");
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("record_build_and_serialise", |b| {
        let mut line = Vec::with_capacity(4096);
        b.iter(|| {
            line.clear();
            record::from_exchange(black_box(&exchange), &ctx)
                .write_line(&mut line)
                .unwrap();
            line.len()
        })
    });
    // The same record when no redaction path reaches into the bodies: they
    // are copied as compact JSON text instead of parsed into trees.
    let raw_config = AuditConfig {
        redact: vec![JsonPath::parse("response_text").unwrap()],
        ..config.clone()
    };
    let raw_ctx = RecordContext::new(&raw_config, b"secret");
    group.bench_function("record_build_and_serialise_bodies_kept_raw", |b| {
        let mut line = Vec::with_capacity(4096);
        b.iter(|| {
            line.clear();
            record::from_exchange(black_box(&exchange), &raw_ctx)
                .write_line(&mut line)
                .unwrap();
            line.len()
        })
    });
    group.throughput(criterion::Throughput::Elements(1000));
    // Issue 14's audit throughput figure: building and serialising each
    // record and compressing the lines, as the writer and uploader do, over
    // 1,000 records that differ as traffic does (ids, unit keys, timings,
    // answers), so the compressors see realistic repetition.
    let batch: Vec<FinishedExchange> = (0..1000u32)
        .map(|i| {
            let mut e = exchange.clone();
            e.start.request_id = format!(
                "01a21648-f871-71a7-{i:04x}-{:012x}",
                u64::from(i) * 0x9e37_79b9
            )
            .into();
            if let Some(tag) = e.start.experiment.as_mut() {
                tag.unit_key = format!("user-{}", i * 7919 % 100_000).into();
            }
            e.start.started_at += Duration::from_micros(u64::from(i) * 1733);
            e.duration = Duration::from_micros(300_000 + u64::from(i * 7717 % 90_000));
            e.captured.text = format!("{text} (answer {i})");
            e
        })
        .collect();
    let encode_batch = |line: &mut Vec<u8>, out: &mut dyn Write| {
        for exchange in &batch {
            line.clear();
            record::from_exchange(black_box(exchange), &raw_ctx)
                .write_line(line)
                .unwrap();
            line.push(b'\n');
            out.write_all(line).unwrap();
        }
    };
    type Compressor = fn() -> Box<dyn CompressTo>;
    let compressors: [(&str, Compressor); 4] = [
        ("gzip_6", || {
            Box::new(flate2::write::GzEncoder::new(
                Vec::with_capacity(256 << 10),
                flate2::Compression::default(),
            ))
        }),
        ("gzip_1", || {
            Box::new(flate2::write::GzEncoder::new(
                Vec::with_capacity(256 << 10),
                flate2::Compression::fast(),
            ))
        }),
        ("zstd_3", || {
            Box::new(zstd::Encoder::new(Vec::with_capacity(256 << 10), 3).unwrap())
        }),
        // What the objects would cost at zstd's fastest level (not used yet).
        ("zstd_1", || {
            Box::new(zstd::Encoder::new(Vec::with_capacity(256 << 10), 1).unwrap())
        }),
    ];
    let mut plain = Vec::new();
    encode_batch(&mut Vec::new(), &mut plain);
    for (name, compressor) in compressors {
        // The object size each compression gives these 1,000 lines (printed
        // once: a size is not a timing).
        let mut object = compressor();
        object.write_all(&plain).unwrap();
        eprintln!(
            "audit object of 1000 records: {} bytes of JSON Lines, {name} {} bytes",
            plain.len(),
            object.finish_len()
        );
        group.bench_function(format!("encode_and_{name}_1000_records"), |b| {
            let mut line = Vec::with_capacity(4096);
            b.iter(|| {
                let mut object = compressor();
                encode_batch(&mut line, &mut *object);
                object.finish_len()
            })
        });
        group.bench_function(format!("{name}_only_1000_records"), |b| {
            b.iter(|| {
                let mut object = compressor();
                object.write_all(black_box(&plain)).unwrap();
                object.finish_len()
            })
        });
    }
    group.bench_function("encode_only_1000_records", |b| {
        let (mut line, mut out) = (Vec::with_capacity(4096), Vec::with_capacity(plain.len()));
        b.iter(|| {
            out.clear();
            encode_batch(&mut line, &mut out);
            out.len()
        })
    });
    group.finish();
}

/// A compressing writer whose compressed length the benchmark keeps.
trait CompressTo: std::io::Write {
    fn finish_len(self: Box<Self>) -> usize;
}

impl CompressTo for flate2::write::GzEncoder<Vec<u8>> {
    fn finish_len(self: Box<Self>) -> usize {
        self.finish().unwrap().len()
    }
}

impl CompressTo for zstd::Encoder<'static, Vec<u8>> {
    fn finish_len(self: Box<Self>) -> usize {
        self.finish().unwrap().len()
    }
}

/// `x-promptgate-tags` on every request: absent (the common case, which
/// must cost a header lookup and nothing else) and with two tags.
fn request_tags(c: &mut Criterion) {
    use promptgate_core::tags::{TAGS_HEADER, TagKey, TagsConfig, parse};
    let mut config = TagsConfig::default();
    for key in ["doc_type", "channel"] {
        config.keys.insert(key.into(), TagKey::default());
    }
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer pg-key"),
    );
    let mut group = c.benchmark_group("request_tags");
    group.bench_function("absent", |b| {
        b.iter(|| parse(black_box(&headers), &config).unwrap())
    });
    headers.insert(
        TAGS_HEADER,
        http::HeaderValue::from_static("doc_type=invoice, channel=email"),
    );
    group.bench_function("two_tags", |b| {
        b.iter(|| parse(black_box(&headers), &config).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    request_tags,
    assignment,
    templates,
    request_head,
    sse_capture,
    experiment_phase,
    audit_encoding
);
criterion_main!(benches);
