//! The admin listener (loopback by default, bearer token otherwise): health
//! and readiness for Kubernetes probes, `/metrics` (the OTel meter as
//! Prometheus text, see `telemetry::metrics`), the active config version and reload
//! status with the clients' permissions and key fingerprints (`clients.rs`),
//! `POST /admin/reload`, and experiment views for product owners and
//! support ("which variant does user X see?").

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

use crate::accept::AcceptBackoff;
use crate::audit::AuditLog;
use crate::body::{GatewayBody, full};
use crate::reload::{ReloadOutcome, Reloader, SourceStatus};
use crate::snapshot::SnapshotHandle;
use crate::telemetry::Telemetry;
use crate::telemetry::ready::Readiness;
use crate::tls::TlsListener;
use promptgate_core::experiments::decide;

mod clients;
use promptgate_core::experiments::model::{Experiment, UnitKeySource};

/// What the admin listener reads and drives, shared with the client side.
pub struct Admin {
    pub snapshots: Arc<SnapshotHandle>,
    pub telemetry: Telemetry,
    pub audit: Option<Arc<AuditLog>>,
    /// True while the client listener accepts connections.
    pub accepting: Arc<AtomicBool>,
    pub reloader: Arc<Reloader>,
    pub readiness: Readiness,
}

/// Serves until `shutdown` resolves, over TLS when `[admin.tls]` is set.
/// Admin requests are short: no drain.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<TlsListener>>,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            (stream, peer) = backoff.next_connection(&listener, "admin") => {
                let (admin, tls) = (admin.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(TokioIo::new(stream), admin).await,
                        Some(tls) => {
                            if let Some((stream, _)) = tls.handshake(stream, peer).await {
                                serve_connection(TokioIo::new(stream), admin).await;
                            }
                        }
                    }
                });
            }
            () = &mut shutdown => return,
        }
    }
}

async fn serve_connection<I>(io: I, admin: Arc<Admin>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let admin = admin.clone();
        async move { Ok::<_, Infallible>(handle(&admin, request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
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
    let Some(expected) = admin.snapshots.load().admin.token_sha256 else {
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
        (&Method::GET, ["readyz"]) => readyz(admin),
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
                    "auth": clients::clients_view(&admin.snapshots.load().auth, std::time::SystemTime::now()),
                    "config_source": source_detail(&status.source),
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
            let snapshot = admin.snapshots.load();
            let mut ids: Vec<&str> = snapshot.experiments.keys().map(|id| &**id).collect();
            ids.sort_unstable();
            json_response(
                StatusCode::OK,
                json!({"experiments": ids, "config_version": &*snapshot.version}),
            )
        }
        (&Method::GET, ["admin", "experiments", id]) => {
            let snapshot = admin.snapshots.load();
            match snapshot.experiments.get(*id) {
                Some(experiment) => {
                    json_response(StatusCode::OK, describe(experiment, &snapshot.version))
                }
                None => error(StatusCode::NOT_FOUND, format!("no experiment named `{id}`")),
            }
        }
        (&Method::GET, ["admin", "experiments", id, "assignment"]) => {
            let snapshot = admin.snapshots.load();
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
            let assignment = decide::for_unit(experiment, unit.into(), true);
            let variant = &experiment.variants[assignment.variant];
            json_response(
                StatusCode::OK,
                json!({
                    "experiment": &*experiment.id,
                    "unit": &*assignment.unit_key,
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

/// Every series of the gateway's meter, in the Prometheus text format.
fn metrics(admin: &Admin) -> Response<GatewayBody> {
    let text = admin.telemetry.metrics().prometheus_text();
    let mut response = Response::new(full(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// 200 while the gateway can serve and record requests, else 503 with why.
fn readyz(admin: &Admin) -> Response<GatewayBody> {
    let snapshot = admin.snapshots.load();
    let verdict = admin.readiness.check(
        admin.accepting.load(Ordering::Acquire),
        admin.audit.as_ref().map(|audit| audit.metrics()),
        snapshot.admin.readiness_audit_failure,
    );
    // A config source that cannot be read leaves the replica ready (the
    // config in force serves requests as well as before) but is named here.
    let source = source_detail(&admin.reloader.status().source);
    match verdict {
        Ok(()) => json_response(
            StatusCode::OK,
            json!({"status": "ready", "config_version": &*snapshot.version, "config_source": source}),
        ),
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reason": reason, "config_version": &*snapshot.version, "config_source": source}),
        ),
    }
}

/// The config source's name, whether it can be read now (and why not), how
/// many reads failed and when one last succeeded.
fn source_detail(source: &SourceStatus) -> Value {
    json!({
        "name": &*source.name,
        "status": if source.failing.is_some() { "failing" } else { "ok" },
        "error": source.failing,
        "errors": source.errors,
        "last_success_unix": source.last_success.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    })
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
