//! Answers every case of a suite with every chosen variant: each request is
//! rendered the way the gateway renders it (the variant's model, parameters
//! and templates), at the suite's temperature, and sent through the variant's
//! route and providers, at most `concurrency` at a time; answers come from
//! the cache when the rendered request is unchanged.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::cache::{self, AnswerCache};
use super::call::{self, Answer};
use super::golden::GoldenCase;
use super::suite::Suite;
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;
use promptgate_core::dialect::Endpoint;
use promptgate_core::experiments::body::{BodyFields, GATEWAY_FIELD, Piece};
use promptgate_core::experiments::model::{Experiment, Variant};
use promptgate_core::experiments::render::{self, Variables};

/// A case that cannot be rendered for a variant (a missing template
/// variable): found before any provider is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderProblem {
    pub line: usize,
    pub case: String,
    pub variant: String,
    pub message: String,
}

/// What one call of one case produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub answer: Result<Answer, String>,
    pub cached: bool,
}

/// Every answer of one variant: `attempts[case][repeat]`.
#[derive(Debug)]
pub struct VariantAnswers {
    /// Index into the experiment's variants.
    pub variant: usize,
    pub attempts: Vec<Vec<Attempt>>,
}

/// The request bodies of one variant, one per case.
struct Rendered {
    variant: usize,
    endpoint: Endpoint,
    providers: Vec<String>,
    bodies: Vec<Bytes>,
}

/// Renders every case for every variant of the suite; every problem at once.
fn render_all(
    suite: &Suite,
    experiment: &Experiment,
    snapshot: &Snapshot,
    cases: &[GoldenCase],
) -> Result<Vec<Rendered>, Vec<RenderProblem>> {
    let mut problems = Vec::new();
    let mut rendered = Vec::with_capacity(suite.variants.len());
    for &index in &suite.variants {
        let variant = &experiment.variants[index];
        let endpoint = call::endpoint_for(&snapshot.upstreams, &variant.route);
        let mut bodies = Vec::with_capacity(cases.len());
        for case in cases {
            match render_case(suite, experiment, variant, endpoint, case) {
                Ok(body) => bodies.push(body),
                Err(message) => problems.push(RenderProblem {
                    line: case.line,
                    case: case.id.clone(),
                    variant: variant.name.to_string(),
                    message,
                }),
            }
        }
        rendered.push(Rendered {
            variant: index,
            endpoint,
            providers: variant
                .route
                .providers
                .iter()
                .map(|&id| snapshot.upstreams.provider_name(id).to_owned())
                .collect(),
            bodies,
        });
    }
    if problems.is_empty() {
        Ok(rendered)
    } else {
        Err(problems)
    }
}

/// The body the gateway would send for this case: the case's messages and
/// variables as a caller's request to the experiment, the variant applied,
/// then the suite's temperature (and Anthropic's required `max_tokens`).
fn render_case(
    suite: &Suite,
    experiment: &Experiment,
    variant: &Variant,
    endpoint: Endpoint,
    case: &GoldenCase,
) -> Result<Bytes, String> {
    let caller = serde_json::to_vec(&json!({
        "model": &*experiment.id,
        "messages": &case.messages,
        GATEWAY_FIELD: { "variables": &case.variables },
    }))
    .map_err(|e| e.to_string())?;
    let fields = BodyFields::parse(&caller).map_err(|e| e.to_string())?;
    let variables = Variables::of(&fields, endpoint).map_err(|e| e.to_string())?;
    let mut body = render::apply(experiment, variant, endpoint, &fields, &variables)
        .map_err(|e| e.to_string())?;
    body.set("temperature", Piece::owned(json!(suite.temperature)));
    if endpoint == Endpoint::Messages && !body.contains("max_tokens") {
        body.set("max_tokens", Piece::owned(json!(suite.max_tokens)));
    }
    body.to_vec().map(Bytes::from).map_err(|e| e.to_string())
}

/// How the answers are obtained.
pub struct RunOptions<'a> {
    pub repeat: u32,
    pub concurrency: usize,
    /// `None`: every case is asked (`--no-cache`).
    pub cache: Option<&'a AnswerCache>,
    pub progress: bool,
}

/// Renders every case (failing before any call if one cannot be), then
/// answers them all.
pub async fn answer_all(
    suite: &Suite,
    experiment: &Experiment,
    snapshot: &Snapshot,
    telemetry: &Telemetry,
    cases: &[GoldenCase],
    options: &RunOptions<'_>,
) -> Result<Vec<VariantAnswers>, Vec<RenderProblem>> {
    let rendered = render_all(suite, experiment, snapshot, cases)?;
    let repeat = options.repeat;
    let total = rendered.len() as u64 * cases.len() as u64 * u64::from(repeat);
    let bar = if options.progress {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {pos}/{len} calls [{wide_bar}] {elapsed} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut answers: Vec<VariantAnswers> = rendered
        .iter()
        .map(|r| VariantAnswers {
            variant: r.variant,
            attempts: vec![Vec::with_capacity(repeat as usize); cases.len()],
        })
        .collect();
    let work = (0..rendered.len()).flat_map(|position| {
        (0..cases.len()).flat_map(move |case| (0..repeat).map(move |rep| (position, case, rep)))
    });
    let mut calls = stream::iter(work)
        .map(|(position, case, rep)| {
            let r = &rendered[position];
            let variant = &experiment.variants[r.variant];
            async move {
                let body = r.bodies[case].clone();
                let providers: Vec<&str> = r.providers.iter().map(String::as_str).collect();
                let key = cache::key(r.endpoint, &providers, &body, rep);
                if let Some(answer) = options.cache.and_then(|c| c.get(&key)) {
                    return (
                        position,
                        case,
                        Attempt {
                            answer: Ok(answer),
                            cached: true,
                        },
                    );
                }
                let answer = call::complete(
                    &snapshot.upstreams,
                    &variant.route,
                    r.endpoint,
                    variant.model(),
                    body,
                    telemetry,
                    suite.timeout,
                )
                .await;
                if let (Ok(answer), Some(cache)) = (&answer, options.cache)
                    && let Err(error) = cache.put(&key, answer)
                {
                    tracing::warn!(%error, "could not store an answer in the eval cache");
                }
                (
                    position,
                    case,
                    Attempt {
                        answer,
                        cached: false,
                    },
                )
            }
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((position, case, attempt)) = calls.next().await {
        answers[position].attempts[case].push(attempt);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(answers)
}

/// The text a judge is shown as the request: the case's last user message,
/// else its template variables.
pub fn request_text(case: &GoldenCase) -> String {
    case.messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(|content| match content {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| Value::Object(case.variables.clone()).to_string())
}
