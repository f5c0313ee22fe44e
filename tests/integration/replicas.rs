//! Several replicas, as a Kubernetes Deployment runs them: three gateway
//! processes (the real binary) with one config and one S3 bucket, behind a
//! client that spreads requests over them the way a Service does, and one of
//! them stopped (SIGTERM, as a rollout or a node drain does) under load.

use crate::support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use promptgate::simulator::{SimConfig, Simulator};
use serde_json::Value;
use support::load::{Sent, assert_each_once, assert_only_known, call, sigterm, start, summary};
use support::process::Gateway;
use support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

const BUCKET: &str = "audit";
const PREFIX: &str = "tenant/audit";
const REPLICAS: usize = 3;
/// Few enough that every user is served by every replica many times.
const USERS: usize = 24;
const WORKERS: usize = 6;

/// Every replica's config: the same but for `[audit] instance`, which the
/// chart leaves to its default, the pod's host name — distinct per pod, as
/// here per process.
fn replica_config(sim: &Simulator, s3: &S3Server, replica: usize) -> String {
    format!(
        r#"
[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "{sim}"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.greeting]
unit_key = {{ header = "x-user-id" }}
[[experiments.greeting.variants]]
name = "control"
weight = 50
model = "gpt-4o-mini"
providers = ["sim"]
system = "Be brief."
[[experiments.greeting.variants]]
name = "friendly"
weight = 50
model = "gpt-4o"
providers = ["sim"]
system = "Be warm."
[audit]
sink = "s3"
s3_bucket = "{BUCKET}"
s3_prefix = "{PREFIX}"
s3_endpoint = "{endpoint}"
s3_region = "us-east-1"
s3_force_path_style = true
spool_dir = "spool"
unit_key_secret_env = "TEST_UNIT_SECRET"
flush_interval_ms = 200
instance = "replica-{replica}"
"#,
        sim = sim.openai_base_url(),
        endpoint = s3.endpoint,
    )
}

/// One request as the spreading client sent it: which replica, and when.
pub(crate) struct Routed {
    pub sent: Sent,
    pub replica: usize,
    pub started: Instant,
}

/// Clients spreading requests round-robin over the replicas in rotation
/// (the Service's endpoints), each request with its own id and one of
/// `USERS` user ids, every third one streamed.
pub(crate) struct SpreadLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    rotation: Arc<RwLock<Vec<(usize, String)>>>,
    workers: Vec<tokio::task::JoinHandle<Vec<Routed>>>,
}

impl SpreadLoad {
    pub(crate) fn start(replicas: &[Gateway]) -> SpreadLoad {
        let rotation: Vec<(usize, String)> = replicas
            .iter()
            .enumerate()
            .map(|(index, gw)| (index, gw.url("/v1/chat/completions")))
            .collect();
        let rotation = Arc::new(RwLock::new(rotation));
        let (stop, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let workers = (0..WORKERS)
            .map(|worker| {
                let (stop, answered, rotation) = (stop.clone(), answered.clone(), rotation.clone());
                tokio::spawn(async move {
                    let client = support::client();
                    let mut out = Vec::new();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let (replica, url) = {
                            let rotation = rotation.read().unwrap();
                            rotation[(worker + n) % rotation.len()].clone()
                        };
                        let id = format!("spread-{worker}-{n}");
                        // Three requests in a row per user, on three
                        // consecutive replicas of the rotation.
                        let user = format!("user-{}", (n / 3 + worker * 5) % USERS);
                        let started = Instant::now();
                        let sent =
                            call(&client, &url, &id, &user, n.is_multiple_of(3), n as u64).await;
                        if sent.complete_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        out.push(Routed {
                            sent,
                            replica,
                            started,
                        });
                        n += 1;
                    }
                    out
                })
            })
            .collect();
        SpreadLoad {
            stop,
            answered,
            rotation,
            workers,
        }
    }

    /// Waits until `more` further requests were answered whole.
    pub(crate) async fn wait_answered(&self, more: usize) {
        let target = self.answered.load(Ordering::Relaxed) + more;
        support::wait::until(
            &format!("{target} requests answered over the replicas"),
            Duration::from_secs(60),
            || self.answered.load(Ordering::Relaxed) >= target,
        )
        .await;
    }

    /// Takes a replica out of rotation, as its endpoint leaves the Service.
    fn remove(&self, replica: usize) {
        self.rotation
            .write()
            .unwrap()
            .retain(|(index, _)| *index != replica);
    }

    pub(crate) async fn finish(self) -> Vec<Routed> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.expect("load worker panicked"));
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_bucket_record_every_request_once_and_agree_on_variants() {
    // A provider slow enough that requests are in flight when a replica is
    // stopped: 100 ms to the first byte, 10 ms between stream frames.
    let sim = Simulator::start(SimConfig {
        first_byte_delay: Duration::from_millis(100),
        chunk_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    s3.wait_writable(BUCKET).await;
    let mut replicas = Vec::new();
    for replica in 0..REPLICAS {
        replicas.push(start(None, &replica_config(&sim, &s3, replica)).await);
    }

    let load = SpreadLoad::start(&replicas);
    load.wait_answered(150).await;

    // A rollout stops replica 1: out of the Service, then SIGTERM while the
    // requests it already has are in flight.
    let stopped = 1;
    load.remove(stopped);
    let signalled = Instant::now();
    sigterm(replicas.remove(stopped)).await;
    load.wait_answered(100).await;
    let routed = load.finish().await;
    for gw in replicas {
        sigterm(gw).await;
    }

    let sent: Vec<Sent> = routed.iter().map(|r| r.sent.clone()).collect();
    // Nobody got a broken answer: a request whose head arrived completed,
    // including those in flight on the replica when it was stopped.
    let broken: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.status.is_some() && !s.complete_ok())
        .collect();
    assert!(broken.is_empty(), "broken answers: {broken:#?}");
    let in_flight_at_stop = routed
        .iter()
        .filter(|r| {
            r.replica == stopped
                && r.started < signalled
                && r.sent.completed_at.is_some_and(|done| done > signalled)
        })
        .count();
    assert!(
        in_flight_at_stop > 0,
        "the stop must come while replica {stopped} has requests in flight"
    );
    eprintln!(
        "replicas: {}; {in_flight_at_stop} requests in flight on replica {stopped} at SIGTERM completed",
        summary(&sent)
    );

    // Every answered request recorded exactly once, whichever replica
    // answered it, in objects whose names say which replica wrote them.
    let stored = s3.records(BUCKET, PREFIX).await;
    let records: Vec<&Value> = stored.iter().map(|(_, record)| record).collect();
    let counts = support::load::counts_by_request_id(records.iter().copied());
    let answered: Vec<&Routed> = routed.iter().filter(|r| r.sent.complete_ok()).collect();
    assert_each_once(&counts, answered.iter().map(|r| r.sent.id.as_str()));
    assert_only_known(&counts, &sent);
    let mut records_per_instance: HashMap<&str, usize> = HashMap::new();
    for (key, record) in &stored {
        let instance = record["gateway_instance"].as_str().unwrap();
        let file = key.rsplit('/').next().unwrap();
        assert!(
            file.starts_with(&format!("{instance}-")),
            "object {key} holds a record of {instance}"
        );
        *records_per_instance.entry(instance).or_default() += 1;
    }
    for replica in 0..REPLICAS {
        let instance = format!("replica-{replica}");
        let answered_by_it = answered.iter().filter(|r| r.replica == replica).count();
        assert!(
            records_per_instance
                .get(instance.as_str())
                .copied()
                .unwrap_or(0)
                >= answered_by_it,
            "{instance} answered {answered_by_it} requests: {records_per_instance:?}"
        );
    }

    // One unit, one variant, on every replica.
    let mut variants_of: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut replicas_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for record in &records {
        let unit = record["unit_key_hash"]
            .as_str()
            .unwrap_or_else(|| panic!("a record outside the experiment: {record}"));
        variants_of
            .entry(unit)
            .or_default()
            .insert(record["assigned_variant"].as_str().unwrap());
        replicas_of
            .entry(unit)
            .or_default()
            .insert(record["gateway_instance"].as_str().unwrap());
    }
    assert_eq!(variants_of.len(), USERS, "one unit per user");
    let split: Vec<_> = variants_of.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        split.is_empty(),
        "units given different variants by different replicas: {split:?}"
    );
    let everywhere = replicas_of.values().filter(|r| r.len() == REPLICAS).count();
    assert_eq!(
        everywhere, USERS,
        "every user must have been served by every replica: {replicas_of:?}"
    );

    // The analyst's view: one experiment over all three replicas' objects.
    let output = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["analyze", "--source", &format!("s3://{BUCKET}/{PREFIX}")])
        .args([
            "--experiment",
            "greeting",
            "--format",
            "json",
            "--bootstrap-resamples",
            "200",
        ])
        .args(["--s3-endpoint", &s3.endpoint, "--s3-force-path-style"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["read"]["request_records"],
        records.len(),
        "{report:#}"
    );
    let units: u64 = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variant| variant["units"].as_u64().unwrap())
        .sum();
    assert_eq!(
        units, USERS as u64,
        "each user counted once, in one variant: {report:#}"
    );
}
