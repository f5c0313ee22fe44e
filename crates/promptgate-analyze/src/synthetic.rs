//! Synthetic audit logs with a known truth, in the exact layout and schema
//! the gateway writes: for the analysis's own tests (A/A false-positive rate,
//! SRM detection), its benchmark (millions of records), and for trying
//! `promptgate analyze` without traffic. Units are assigned by the gateway's
//! own hash (`assign::choose_variant`), so splits behave like production ones.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use promptgate_core::experiments::assign;

/// One variant's truth.
#[derive(Debug, Clone)]
pub struct SyntheticVariant {
    pub name: String,
    pub weight: f64,
    /// Probability that a request gets `thumbs_up = true` feedback.
    pub thumbs_up_rate: f64,
    /// Median latency; latencies are log-normal with σ = 0.5.
    pub latency_median_ms: f64,
    /// Share of this variant's units whose records are lost (0: none) — a
    /// logging bug of the kind a sample-ratio check exists to catch.
    pub lost_share: f64,
}

#[derive(Debug, Clone)]
pub struct SyntheticLog {
    pub experiment: String,
    pub variants: Vec<SyntheticVariant>,
    pub units: u64,
    pub requests_per_unit: u64,
    /// Share of requests that get feedback.
    pub feedback_share: f64,
    /// The `dt=` partition the records go to (spread over its 24 hours).
    pub date: String,
    /// Records per object (the gateway's objects hold one spool segment).
    pub records_per_object: usize,
    pub seed: u64,
}

/// A normal draw (Box–Muller), for log-normal latencies and unit effects.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Seeds the random stream of shadows and bodies apart from the served
/// records' (XORed with the log's seed).
const SHADOW_STREAM: u64 = 0x5348_4144_4f57;

/// Questions a synthetic caller asks (`{n}`: an order, account or invoice
/// number), each with the gist of the answer.
const TOPICS: [(&str, &str); 4] = [
    (
        "Where is my order {n}? It was due on Monday.",
        "Order {n} left our warehouse yesterday and should arrive within two working days.",
    ),
    (
        "How do I reset the password of account {n}?",
        "Open the sign-in page, choose \"Forgot password\" and follow the link we email to the address of account {n}.",
    ),
    (
        "Can I get a refund for invoice {n}? The item arrived broken.",
        "Yes: reply with a photo of the damage and we refund invoice {n} within five working days.",
    ),
    (
        "Do you open on public holidays? I want to pick up parcel {n}.",
        "Our shops close on public holidays; parcel {n} waits for you until the next working day.",
    ),
];

/// System prompts of the even and odd variants of the list: the odd ones
/// wrap the answer in a greeting and an offer, four times in five.
const SYSTEMS: [&str; 2] = [
    "You are a concise support assistant. Answer in one or two sentences.",
    "You are a warm, friendly support assistant. Start with a cheerful greeting.",
];

/// One synthetic question, logged with the answers of each variant.
struct Question {
    user: String,
    answer: String,
}

impl Question {
    fn new(number: u64) -> Question {
        let (user, answer) = TOPICS[(number % TOPICS.len() as u64) as usize];
        let n = number.to_string();
        Question {
            user: user.replace("{n}", &n),
            answer: answer.replace("{n}", &n),
        }
    }

    /// Puts the question and variant `index`'s answer in `record`, as the
    /// gateway logs bodies, with tokens (four characters each) and cost.
    fn log_bodies(&self, record: &mut serde_json::Value, index: usize, rng: &mut StdRng) {
        let system = SYSTEMS[index % SYSTEMS.len()];
        let text = if index % 2 == 1 && rng.random::<f64>() < 0.8 {
            format!(
                "Thanks for reaching out! {} Is there anything else I can help with?",
                self.answer
            )
        } else {
            self.answer.clone()
        };
        let input_tokens = (system.len() + self.user.len()).div_ceil(4) as u64;
        let output_tokens = text.len().div_ceil(4) as u64;
        let model = &record["model"];
        let request = json!({"model": model, "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": self.user}]});
        let response = json!({"object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens}});
        for (field, value) in [
            ("request", request),
            ("response", response),
            ("response_text", json!(text)),
            ("bodies_logged", json!(true)),
            ("response_truncated", json!(false)),
            ("input_tokens", json!(input_tokens)),
            ("output_tokens", json!(output_tokens)),
            (
                "cost_usd",
                json!((input_tokens as f64 * 0.15 + output_tokens as f64 * 0.6) / 1e6),
            ),
        ] {
            record[field] = value;
        }
    }

    /// The shadow record of `served` on variant `index` (`variant`), as the
    /// gateway writes it (docs/audit-schema.md, "Shadow records").
    fn shadow(
        &self,
        served: &serde_json::Value,
        index: usize,
        variant: &SyntheticVariant,
        rng: &mut StdRng,
    ) -> serde_json::Value {
        let mut record = served.clone();
        let served_id = served["request_id"].as_str().unwrap_or_default();
        let latency = variant.latency_median_ms * (0.5 * normal(rng)).exp();
        for (field, value) in [
            ("request_id", json!(format!("{served_id}-shadow"))),
            ("role", json!("shadow")),
            ("shadow_of", json!(served_id)),
            ("assigned_variant", json!(variant.name)),
            ("served_variant", json!(variant.name)),
            ("variant_share", serde_json::Value::Null),
            ("latency_ms", json!((latency * 1000.0).round() / 1000.0)),
        ] {
            record[field] = value;
        }
        self.log_bodies(&mut record, index, rng);
        record
    }
}

struct ObjectWriter<'a> {
    root: &'a Path,
    table: &'static str,
    date: &'a str,
    per_object: usize,
    lines: Vec<String>,
    hour: u32,
    written: u64,
}

impl ObjectWriter<'_> {
    fn push(&mut self, line: String, hour: u32) -> std::io::Result<()> {
        if hour != self.hour || self.lines.len() >= self.per_object {
            self.flush()?;
            self.hour = hour;
        }
        self.lines.push(line);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let dir = self.root.join(format!(
            "{}dt={}/hour={:02}",
            self.table, self.date, self.hour
        ));
        std::fs::create_dir_all(&dir)?;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
        for line in self.lines.drain(..) {
            gzip.write_all(line.as_bytes())?;
            gzip.write_all(b"\n")?;
        }
        std::fs::write(
            dir.join(format!("synthetic-{:06}.jsonl.gz", self.written)),
            gzip.finish()?,
        )?;
        self.written += 1;
        Ok(())
    }
}

impl SyntheticLog {
    /// Writes the log under `root` (as the `local` sink would); returns the
    /// number of request records written.
    pub fn write(&self, root: &Path) -> std::io::Result<u64> {
        self.write_with_unit_effect(root, 0.0)
    }

    /// As `write`, with a random effect per unit: each unit's thumbs-up
    /// probability is its variant's rate plus a normal draw of standard
    /// deviation `unit_effect_sd` (clipped to [0, 1]), so that the requests of
    /// a unit resemble each other as real users' do. At 0 no draw is made and
    /// the log is exactly `write`'s. (A method rather than a field, so that
    /// struct literals of `SyntheticLog` written before it keep compiling.)
    pub fn write_with_unit_effect(&self, root: &Path, unit_effect_sd: f64) -> std::io::Result<u64> {
        self.write_records(root, unit_effect_sd, &serde_json::Value::Null, 0.0)
    }

    /// As `write`, every record carrying `tags` (an object, as the gateway
    /// writes `x-promptgate-tags`). Unit keys then include the seed, so logs
    /// of different seeds and dates can share a root as separate slices.
    pub fn write_tagged(&self, root: &Path, tags: &serde_json::Value) -> std::io::Result<u64> {
        self.write_records(root, 0.0, tags, 0.0)
    }

    /// As `write_tagged` (`tags` may be `Value::Null`: no tags), with logged
    /// bodies on every record and, for a share `shadow_share` (0–1) of the
    /// served requests, a shadow record beside it: the next variant of the
    /// list (the last one's shadow is the first) run on the same question, as
    /// a `[experiments.<id>.shadow]` of every other variant logs it. The
    /// served records keep `write`'s latencies and feedback (the shadows and
    /// bodies draw from a random stream of their own); their tokens and cost
    /// follow the length of their texts. Returns served + shadow records.
    pub fn write_with_shadows(
        &self,
        root: &Path,
        tags: &serde_json::Value,
        shadow_share: f64,
    ) -> std::io::Result<u64> {
        self.write_records(root, 0.0, tags, shadow_share.max(f64::MIN_POSITIVE))
    }

    /// `shadow_share` 0: no bodies and no shadows, `write`'s log byte for byte.
    fn write_records(
        &self,
        root: &Path,
        unit_effect_sd: f64,
        tags: &serde_json::Value,
        shadow_share: f64,
    ) -> std::io::Result<u64> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut shadow_rng = StdRng::seed_from_u64(self.seed ^ SHADOW_STREAM);
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        let mut requests = ObjectWriter {
            root,
            table: "v1/",
            date: &self.date,
            per_object: self.records_per_object,
            lines: Vec::new(),
            hour: 0,
            written: 0,
        };
        let mut feedback = ObjectWriter {
            table: "feedback/v1/",
            lines: Vec::new(),
            ..requests
        };
        let salt = format!("{}-salt-{}", self.experiment, self.seed);
        let mut records = 0;
        for unit in 0..self.units {
            let unit_key = match tags {
                serde_json::Value::Null => format!("unit-{unit}"),
                _ => format!("unit-{}-{unit}", self.seed),
            };
            let chosen = assign::choose_variant(
                &salt,
                &unit_key,
                self.variants.iter().map(|v| (v.name.as_str(), v.weight)),
            );
            let Some((index, variant)) = chosen.and_then(|i| Some((i, self.variants.get(i)?)))
            else {
                continue;
            };
            if rng.random::<f64>() < variant.lost_share {
                continue;
            }
            let thumbs_up_rate = if unit_effect_sd > 0.0 {
                (variant.thumbs_up_rate + unit_effect_sd * normal(&mut rng)).clamp(0.0, 1.0)
            } else {
                variant.thumbs_up_rate
            };
            // Units arrive in order over the day: hours stay grouped as in the real log.
            let hour = (unit * 24 / self.units.max(1)) as u32;
            for request in 0..self.requests_per_unit {
                let request_id = format!("{}-{unit}-{request}", self.seed);
                let latency = variant.latency_median_ms * (0.5 * normal(&mut rng)).exp();
                let ts = format!("{}T{hour:02}:{:02}:00.000Z", self.date, request % 60);
                let mut record = json!({
                    "schema_version": 1, "record_type": "request", "request_id": request_id,
                    "trace_id": null, "role": "served", "shadow_of": null, "ts_start": ts,
                    "experiment": self.experiment, "assigned_variant": variant.name,
                    "served_variant": variant.name, "assignment_reason": "hash",
                    "variant_share": variant.weight / total, "unit_key_hash": unit_key,
                    "endpoint": "chat_completions", "dialect": "openai", "provider": "synthetic",
                    "model": self.experiment, "stream": false, "status": 200,
                    "outcome": "completed", "error_class": null,
                    "latency_ms": (latency * 1000.0).round() / 1000.0, "ttfb_ms": null,
                    "input_tokens": 20, "output_tokens": 40, "cost_usd": 0.00006,
                    "response_text": "synthetic answer", "tags": tags,
                });
                let mut shadow = None;
                if shadow_share > 0.0 {
                    let question = Question::new(unit * 100 + request);
                    question.log_bodies(&mut record, index, &mut shadow_rng);
                    if shadow_rng.random::<f64>() < shadow_share {
                        let of = (index + 1) % self.variants.len();
                        shadow = self
                            .variants
                            .get(of)
                            .map(|v| question.shadow(&record, of, v, &mut shadow_rng));
                    }
                }
                requests.push(record.to_string(), hour)?;
                records += 1;
                if let Some(shadow) = shadow {
                    requests.push(shadow.to_string(), hour)?;
                    records += 1;
                }
                if rng.random::<f64>() < self.feedback_share {
                    let up = rng.random::<f64>() < thumbs_up_rate;
                    let event = json!({
                        "schema_version": 1, "record_type": "feedback",
                        "feedback_id": format!("fb-{request_id}"), "request_id": request_id,
                        "ts_received": ts, "metric": "thumbs_up", "value_type": "boolean",
                        "value_bool": up, "value_number": if up { 1.0 } else { 0.0 },
                    });
                    feedback.push(event.to_string(), hour)?;
                }
            }
        }
        requests.flush()?;
        feedback.flush()?;
        Ok(records)
    }
}
