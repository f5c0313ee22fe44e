//! The admin listener (loopback by default, bearer token otherwise): health
//! and readiness for Kubernetes probes, the active config version and reload
//! status, `POST /admin/reload`, and experiment views for product owners and
//! support ("which variant does user X see?").

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::body::{GatewayBody, full};
use crate::capture::SkipReason;
use crate::experiments::decide;
use crate::experiments::model::{Experiment, UnitKeySource};
use crate::reload::{ReloadOutcome, Reloader};
use crate::server::Gateway;
use crate::shadow::ShadowMetrics;

pub struct Admin {
    pub gateway: Arc<Gateway>,
    pub reloader: Arc<Reloader>,
}

/// Serves until `shutdown` resolves. Admin requests are short: no drain.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let admin = admin.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let admin = admin.clone();
                        async move { Ok::<_, Infallible>(handle(&admin, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut shutdown => return,
        }
    }
}

fn json_response(status: StatusCode, value: Value) -> Response<GatewayBody> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<GatewayBody> {
    json_response(status, json!({"error": message.into()}))
}

fn authorized(admin: &Admin, request: &Request<Incoming>) -> bool {
    let Some(expected) = admin.gateway.snapshots.load().admin.token_sha256 else {
        return true; // loopback listener without a token: allowed by validation
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    bool::from(digest.ct_eq(&expected))
}

async fn handle(admin: &Admin, request: Request<Incoming>) -> Response<GatewayBody> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, ["readyz"]) => {
            let version = admin.gateway.snapshots.load().version.clone();
            json_response(
                StatusCode::OK,
                json!({"status": "ready", "config_version": &*version}),
            )
        }
        (&Method::GET, ["metrics"]) => metrics(admin),
        (_, ["admin", ..]) if !authorized(admin, &request) => error(
            StatusCode::UNAUTHORIZED,
            "send the admin token as Authorization: Bearer <token>",
        ),
        (&Method::GET, ["admin", "config"]) => {
            let status = admin.reloader.status();
            json_response(
                StatusCode::OK,
                json!({
                    "config_version": &*status.version,
                    "loaded_at_unix": status.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "reloads_ok": status.reloads_ok,
                    "reloads_failed": status.reloads_failed,
                    "last_error": status.last_error,
                }),
            )
        }
        (&Method::POST, ["admin", "reload"]) => {
            let reloader = admin.reloader.clone();
            match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(Ok(ReloadOutcome::Reloaded { version })) => json_response(
                    StatusCode::OK,
                    json!({"status": "reloaded", "config_version": &*version}),
                ),
                Ok(Ok(ReloadOutcome::Unchanged { version })) => json_response(
                    StatusCode::OK,
                    json!({"status": "unchanged", "config_version": &*version}),
                ),
                Ok(Err(err)) => {
                    let problems: Vec<Value> = err
                        .problems()
                        .iter()
                        .map(|p| json!({"line": p.line, "field": p.path, "message": p.message}))
                        .collect();
                    json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        json!({
                            "status": "failed",
                            "config_version": &*admin.reloader.status().version,
                            "error": err.to_string(),
                            "problems": problems,
                        }),
                    )
                }
                Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the reload task failed"),
            }
        }
        (&Method::GET, ["admin", "experiments"]) => {
            let snapshot = admin.gateway.snapshots.load();
            let mut ids: Vec<&str> = snapshot.experiments.keys().map(|id| &**id).collect();
            ids.sort_unstable();
            json_response(
                StatusCode::OK,
                json!({"experiments": ids, "config_version": &*snapshot.version}),
            )
        }
        (&Method::GET, ["admin", "experiments", id]) => {
            let snapshot = admin.gateway.snapshots.load();
            match snapshot.experiments.get(*id) {
                Some(experiment) => {
                    json_response(StatusCode::OK, describe(experiment, &snapshot.version))
                }
                None => error(StatusCode::NOT_FOUND, format!("no experiment named `{id}`")),
            }
        }
        (&Method::GET, ["admin", "experiments", id, "assignment"]) => {
            let snapshot = admin.gateway.snapshots.load();
            let Some(experiment) = snapshot.experiments.get(*id) else {
                return error(StatusCode::NOT_FOUND, format!("no experiment named `{id}`"));
            };
            let unit = request.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "unit")
                    .map(|(_, v)| v.into_owned())
            });
            let Some(unit) = unit.filter(|u| !u.is_empty()) else {
                return error(StatusCode::BAD_REQUEST, "give the unit key as ?unit=<key>");
            };
            let assignment = decide::for_unit(experiment, unit, true);
            let variant = &experiment.variants[assignment.variant];
            json_response(
                StatusCode::OK,
                json!({
                    "experiment": &*experiment.id,
                    "unit": assignment.unit_key,
                    "variant": &*variant.name,
                    "variant_version": &*variant.version,
                    "reason": assignment.reason.to_string(),
                    "note": "flag rules and override headers of a particular request can still change this",
                    "config_version": &*snapshot.version,
                }),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {} {path}", request.method()),
        ),
    }
}

/// Prometheus text exposition of the reload counters and the active version.
/// The full metric set arrives with the telemetry module; these two exist now
/// because an operator must see a failing reload without reading logs.
fn metrics(admin: &Admin) -> Response<GatewayBody> {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let status = admin.reloader.status();
    let mut text = format!(
        "# HELP promptgate_config_reloads_total Config reloads by outcome.\n\
         # TYPE promptgate_config_reloads_total counter\n\
         promptgate_config_reloads_total{{outcome=\"ok\"}} {}\n\
         promptgate_config_reloads_total{{outcome=\"failed\"}} {}\n\
         # HELP promptgate_config_info The config version in force (always 1).\n\
         # TYPE promptgate_config_info gauge\n\
         promptgate_config_info{{version=\"{}\"}} 1\n",
        status.reloads_ok, status.reloads_failed, status.version
    );
    if let Some(audit) = &admin.gateway.audit {
        let m = audit.metrics();
        let series: [(&str, &str, &str, u64); 11] = [
            (
                "promptgate_audit_spool_segments",
                "gauge",
                "Sealed spool segments waiting for upload.",
                m.spool_segments.load(Relaxed),
            ),
            (
                "promptgate_audit_queue_depth",
                "gauge",
                "Records waiting for the spool writer.",
                m.queue_depth.load(Relaxed),
            ),
            (
                "promptgate_audit_spool_bytes",
                "gauge",
                "Bytes held in the audit spool.",
                m.spool_bytes.load(Relaxed),
            ),
            (
                "promptgate_audit_records_written_total",
                "counter",
                "Records written to the spool.",
                m.records_written.load(Relaxed),
            ),
            (
                "promptgate_audit_records_uploaded_total",
                "counter",
                "Records stored in audit objects.",
                m.records_uploaded.load(Relaxed),
            ),
            (
                "promptgate_audit_objects_uploaded_total",
                "counter",
                "Audit objects stored.",
                m.objects_uploaded.load(Relaxed),
            ),
            (
                "promptgate_audit_upload_failures_total",
                "counter",
                "Failed audit object uploads (each is retried).",
                m.upload_failures.load(Relaxed),
            ),
            (
                "promptgate_audit_requests_rejected_total",
                "counter",
                "Requests refused with 503 because the audit spool was full.",
                m.rejected_requests.load(Relaxed),
            ),
            (
                "promptgate_audit_records_dropped_queue_full_total",
                "counter",
                "Records dropped: queue full.",
                m.dropped_queue_full.load(Relaxed),
            ),
            (
                "promptgate_audit_records_dropped_spool_full_total",
                "counter",
                "Records dropped by on_spool_full = drop.",
                m.dropped_spool_full.load(Relaxed),
            ),
            (
                "promptgate_audit_records_dropped_io_total",
                "counter",
                "Records lost to spool write errors.",
                m.dropped_io.load(Relaxed),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }
    shadow_metrics(&mut text, admin.gateway.shadows.metrics());
    let mut response = Response::new(full(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn shadow_metrics(text: &mut String, m: &ShadowMetrics) {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    for (name, kind, help, value) in [
        (
            "promptgate_shadow_calls_started_total",
            "counter",
            "Shadow calls started.",
            m.started.load(Relaxed),
        ),
        (
            "promptgate_shadow_calls_completed_total",
            "counter",
            "Shadow calls that ended with a complete 2xx answer.",
            m.completed.load(Relaxed),
        ),
        (
            "promptgate_shadow_calls_failed_total",
            "counter",
            "Shadow calls that failed, timed out or were cancelled.",
            m.failed.load(Relaxed),
        ),
        (
            "promptgate_shadow_calls_in_flight",
            "gauge",
            "Shadow calls running now.",
            m.in_flight.load(Relaxed),
        ),
    ] {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    text.push_str(
        "# HELP promptgate_shadow_calls_skipped_total Sampled shadow calls not made, by reason.\n\
         # TYPE promptgate_shadow_calls_skipped_total counter\n",
    );
    for reason in SkipReason::ALL {
        let _ = writeln!(
            text,
            "promptgate_shadow_calls_skipped_total{{reason=\"{}\"}} {}",
            reason.label(),
            m.skipped(reason)
        );
    }
    let _ = write!(
        text,
        "# HELP promptgate_shadow_cost_usd_total Priced cost of shadow calls.\n\
         # TYPE promptgate_shadow_cost_usd_total counter\n\
         promptgate_shadow_cost_usd_total {}\n",
        m.cost_usd()
    );
}

fn describe(experiment: &Experiment, version: &str) -> Value {
    let total: f64 = experiment.variants.iter().map(|v| v.weight).sum();
    let variants: Vec<Value> = experiment
        .variants
        .iter()
        .map(|v| {
            json!({
                "name": &*v.name,
                "weight": v.weight,
                "share_of_enrolled": if total > 0.0 { v.weight / total } else { 0.0 },
                "version": &*v.version,
                "model": v.model(),
            })
        })
        .collect();
    let name = |index: Option<usize>| index.map(|i| &*experiment.variants[i].name);
    json!({
        "id": &*experiment.id,
        "enabled": experiment.enabled,
        "unit_key": match &experiment.unit_key {
            UnitKeySource::Header(h) => format!("header:{h}"),
            UnitKeySource::BodyField(path) => format!("body:{}", path.join(".")),
            UnitKeySource::ClientId => "client_id".to_owned(),
        },
        "enrolment_percent": experiment.enrolment_percent,
        "default_variant": &*experiment.variants[experiment.default_variant].name,
        "fallback_variant": name(experiment.fallback_variant),
        "killswitch": name(experiment.killswitch),
        "rules": experiment.rules.iter().map(|r| json!({"name": &*r.name, "variant": &*experiment.variants[r.variant].name})).collect::<Vec<_>>(),
        "variants": variants,
        "shadow": experiment.shadow.as_ref().map(|s| json!({
            "variants": s.variants.iter().map(|&i| &*experiment.variants[i].name).collect::<Vec<_>>(),
            "sample_percent": s.sample_percent,
            "sticky": s.sticky,
            "max_concurrent": s.max_concurrent,
            "timeout_ms": s.timeout.as_millis() as u64,
            "max_requests_per_day": s.budget.requests,
            "max_tokens_per_day": s.budget.tokens,
            "max_usd_per_day": s.budget.usd,
        })),
        "config_version": version,
    })
}
