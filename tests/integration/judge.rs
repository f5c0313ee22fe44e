//! `promptgate judge` end to end: answers logged by the real gateway (demo
//! provider, local audit log), a simulated judge model (the simulator's judge
//! rules) reached through the config's providers, verdicts written through
//! the audit pipeline and read back by `promptgate analyze`.
//!
//! A position-biased judge yields ties only; a consistent one gives the
//! preferred variant its wins, which analyze's McNemar test on shadow pairs
//! and its per-variant comparison then see; `--max-pairs`, `--max-usd` and
//! resuming are honoured (counted in the calls the simulator received); the
//! calibration's kappa matches a Python reference; the binary's `--dry-run`
//! asks and writes nothing.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use http::Method;
use promptgate::judge::{self, JudgeOptions, JudgeReport};
use promptgate::simulator::{SimConfig, SimJudge, Simulator};
use promptgate_analyze::{self as analyze, DateRange, S3Options, Source};
use support::analyze::options;

const REQUESTS: usize = 12;

/// The served variant `brief` and, in its shadow, `warm`: the demo provider
/// quotes each variant's system prompt in its answer, so a judge that prefers
/// "warm" prefers the shadow.
const SHADOW_EXPERIMENT: &str = r#"
[experiments.pairs]
unit_key = { header = "x-user-id" }
[[experiments.pairs.variants]]
name = "brief"
weight = 1
model = "demo-a"
providers = ["demo"]
system = "Be brief."
[[experiments.pairs.variants]]
name = "warm"
weight = 0
model = "demo-b"
providers = ["demo"]
system = "Be warm."
[experiments.pairs.shadow]
variants = ["warm"]
sample_percent = 100
"#;

/// Both variants served, half the traffic each: pointwise scores only.
const SPLIT_EXPERIMENT: &str = r#"
[experiments.pairs]
unit_key = { header = "x-user-id" }
[[experiments.pairs.variants]]
name = "brief"
weight = 50
model = "demo-a"
providers = ["demo"]
system = "Be brief."
[[experiments.pairs.variants]]
name = "warm"
weight = 50
model = "demo-b"
providers = ["demo"]
system = "Be warm."
"#;

fn gateway_config(experiment: &str) -> String {
    format!(
        r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
{experiment}
[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100
"#
    )
}

/// The log written by the gateway, and where the judge's files go.
struct Logged {
    _gateway_dir: tempfile::TempDir,
    audit: PathBuf,
    work: tempfile::TempDir,
}

/// Sends `REQUESTS` chat requests through a gateway and stops it, so every
/// record is in the local audit log.
async fn logged_traffic(experiment: &str) -> Logged {
    let mut gw = support::TestGateway::start(&gateway_config(experiment)).await;
    let client = support::client();
    for i in 0..REQUESTS {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("u{i}"))],
            format!(
                r#"{{"model":"pairs","messages":[{{"role":"user","content":"question {i}"}}]}}"#
            ),
        )
        .await;
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    gw.begin_shutdown().await.unwrap();
    let audit = gw.dir.path().join("audit");
    Logged {
        _gateway_dir: gw.dir,
        audit,
        work: tempfile::tempdir().unwrap(),
    }
}

impl Logged {
    /// The judge's config: the same experiment and audit log, the judge
    /// model at the simulator (priced), everything else at the demo.
    fn judge_config(&self, sim: &Simulator, experiment: &str, feedback: &str) -> PathBuf {
        let path = self.work.path().join("judge.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[providers.sim]
kind = "openai"
base_url = "{sim}"
max_retries = 0
[[routes]]
models = ["judge-model"]
providers = ["sim"]
[[routes]]
models = ["*"]
providers = ["demo"]
{experiment}
{feedback}
[audit]
sink = "local"
local_dir = "{audit}"
spool_dir = "{work}/unused-spool"
[prices."judge-model"]
input_per_million = 1000.0
output_per_million = 1000.0
"#,
                sim = sim.openai_base_url(),
                audit = self.audit.display(),
                work = self.work.path().display(),
            ),
        )
        .unwrap();
        path
    }

    fn rubric(&self, mode: &str) -> PathBuf {
        let path = self.work.path().join("quality.toml");
        std::fs::write(
            &path,
            format!(
                "model = \"judge-model\"\nmode = \"{mode}\"\ncriteria = \"The answer is warm.\"\n"
            ),
        )
        .unwrap();
        path
    }

    fn options(&self, config: PathBuf, rubric: PathBuf) -> JudgeOptions {
        JudgeOptions {
            config,
            rubric,
            experiment: "pairs".into(),
            range: DateRange::default(),
            skip_corrupt: false,
            sample_rate: 1.0,
            max_items: None,
            max_usd: None,
            concurrency: 4,
            dry_run: false,
            calibrate: None,
            spool_dir: self.work.path().join("judge-spool"),
            progress: false,
        }
    }

    async fn judge(&self, options: &JudgeOptions) -> JudgeReport {
        judge::judge(&self.source().await, options).await.unwrap()
    }

    async fn source(&self) -> Source {
        Source::open(self.audit.to_str().unwrap(), &S3Options::default())
            .await
            .unwrap()
    }
}

fn judge_calls(sim: &Simulator) -> usize {
    sim.received()
        .iter()
        .filter(|r| r.json()["model"] == "judge-model")
        .count()
}

async fn judge_sim(judge: SimJudge) -> Simulator {
    Simulator::start(SimConfig {
        judge: Some(judge),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_biased_judge_yields_ties_only() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::PositionBias).await;
    let config = logged.judge_config(&sim, SHADOW_EXPERIMENT, "");
    let report = logged
        .judge(&logged.options(config, logged.rubric("pairwise")))
        .await;
    let tally = &report.pairwise["brief → warm"];
    assert_eq!(
        (tally.wins, tally.losses, tally.ties),
        (0, 0, REQUESTS as u64),
        "{report:#?}"
    );
    assert_eq!(report.position_consistency, Some(0.0));
    assert_eq!(report.verbosity.decided, 0);
    // Both orders of every pair were asked.
    assert_eq!(judge_calls(&sim), 2 * REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_preference_wins_for_its_variant_and_analyze_pairs_it() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::Prefers("warm".into())).await;
    // Declared metrics must include the judge's, with its type.
    let config = logged.judge_config(
        &sim,
        SHADOW_EXPERIMENT,
        "[feedback.metrics]\n\"judge.quality\" = \"boolean\"\n",
    );
    let report = logged
        .judge(&logged.options(config, logged.rubric("pairwise")))
        .await;
    let tally = &report.pairwise["brief → warm"];
    assert_eq!(
        (tally.wins, tally.losses, tally.ties),
        (REQUESTS as u64, 0, 0)
    );
    assert_eq!(report.position_consistency, Some(1.0));
    assert_eq!(report.feedback_written, 2 * REQUESTS as u64);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // "Be warm." is shorter than "Be brief.": the preferred answers are shorter.
    let verbosity = &report.verbosity;
    assert_eq!(verbosity.decided, REQUESTS as u64);
    assert!(
        verbosity.winner_mean_chars < verbosity.loser_mean_chars,
        "{verbosity:?}"
    );

    let analysed = analyze::analyze(&logged.source().await, &options("pairs"))
        .await
        .unwrap();
    let warm = analysed
        .shadows
        .iter()
        .find(|s| s.shadow_variant == "warm")
        .unwrap_or_else(|| panic!("{:#?}", analysed.shadows));
    let mcnemar = &warm.paired_feedback["judge.quality"];
    assert_eq!(
        (mcnemar.rate_a, mcnemar.rate_b, mcnemar.discordant),
        (0.0, 1.0, REQUESTS as u64)
    );
    assert!(mcnemar.p_value < 0.001, "{mcnemar:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointwise_scores_reach_analyze_per_variant() {
    let logged = logged_traffic(SPLIT_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::Prefers("warm".into())).await;
    let config = logged.judge_config(&sim, SPLIT_EXPERIMENT, "");
    let report = logged
        .judge(&logged.options(config, logged.rubric("pointwise")))
        .await;
    assert_eq!(report.judged, REQUESTS as u64);
    assert_eq!(report.pointwise["warm"].mean_score, Some(9.0));
    assert_eq!(report.pointwise["brief"].mean_score, Some(2.0));
    assert_eq!(report.pointwise["warm"].pass_rate, Some(1.0));

    let analysed = analyze::analyze(&logged.source().await, &options("pairs"))
        .await
        .unwrap();
    // Per variant, the scores' means over the requests each variant served
    // (a constant score per variant leaves Welch's test without a variance,
    // so this log shows estimates, not a comparison).
    let estimate = |name: &str| {
        let variant = analysed.variants.iter().find(|v| v.name == name).unwrap();
        let found = &variant.feedback["judge.quality"];
        (found.n, found.estimate, variant.requests)
    };
    let (brief, warm) = (estimate("brief"), estimate("warm"));
    assert_eq!((brief.1, warm.1), (2.0, 9.0));
    assert_eq!(
        (brief.0, warm.0),
        (brief.2, warm.2),
        "every served answer scored"
    );
    assert_eq!(brief.0 + warm.0, REQUESTS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pairs_budget_and_resume_are_honoured() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::Prefers("warm".into())).await;
    let config = logged.judge_config(&sim, SHADOW_EXPERIMENT, "");
    let base = logged.options(config, logged.rubric("pairwise"));

    let first = logged
        .judge(&JudgeOptions {
            max_items: Some(3),
            ..base.clone()
        })
        .await;
    assert_eq!((first.judged, first.deferred), (3, REQUESTS as u64 - 3));
    assert_eq!(judge_calls(&sim), 6);

    // A budget for about two more items (prices: 1000 USD per million tokens).
    let per_item = first.spent_usd.unwrap() / 3.0;
    let budgeted = logged
        .judge(&JudgeOptions {
            max_usd: Some(per_item * 2.5),
            concurrency: 1,
            ..base.clone()
        })
        .await;
    assert!(budgeted.stopped_by_budget, "{budgeted:#?}");
    assert_eq!(budgeted.already_judged, 3);
    assert!(
        budgeted.judged >= 1 && budgeted.judged <= 3,
        "{budgeted:#?}"
    );
    assert!(budgeted.spent_usd.unwrap() <= per_item * 2.5);
    assert!(budgeted.estimated_usd.unwrap() > per_item * 2.5);

    let rest = logged.judge(&base).await;
    assert_eq!(
        rest.already_judged + rest.judged,
        REQUESTS as u64,
        "{rest:#?}"
    );
    let calls = judge_calls(&sim);
    assert_eq!(calls, 2 * REQUESTS, "every pair asked once, in two orders");

    let again = logged.judge(&base).await;
    assert_eq!((again.judged, again.already_judged), (0, REQUESTS as u64));
    assert_eq!(judge_calls(&sim), calls, "a re-run asks nothing new");
}

#[test]
fn kappa_matches_the_python_reference() {
    let reference: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/stats_reference/kappa.json"
    )))
    .unwrap();
    let labels = |key: &str| -> std::collections::HashMap<String, String> {
        reference[key]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, label)| (format!("r{i}"), label.as_str().unwrap().to_owned()))
            .collect()
    };
    let found = judge::calibrate::calibrate(&labels("judge"), &labels("human"));
    let close = |a: Option<f64>, key: &str| {
        let expected = reference[key].as_f64().unwrap();
        assert!(
            (a.unwrap() - expected).abs() < 1e-12,
            "{key}: {a:?} vs {expected}"
        );
    };
    close(found.agreement, "agreement");
    close(found.cohen_kappa, "cohen_kappa");
    assert_eq!(found.items, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_compares_the_judge_with_human_labels() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::Prefers("warm".into())).await;
    let config = logged.judge_config(&sim, SHADOW_EXPERIMENT, "");
    let mut options = logged.options(config, logged.rubric("pairwise"));
    // Humans agree with the judge on three of the first four served requests.
    let ids = served_ids(&logged.audit);
    let labels = logged.work.path().join("labels.jsonl");
    let lines: Vec<String> = ids
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, id)| {
            let label = if i == 0 { "served" } else { "shadow" };
            format!(r#"{{"request_id":"{id}","label":"{label}"}}"#)
        })
        .collect();
    std::fs::write(&labels, lines.join("\n")).unwrap();
    options.calibrate = Some(labels);
    let report = logged.judge(&options).await;
    let calibration = report.calibration.unwrap();
    assert_eq!(calibration.items, 4);
    assert_eq!(calibration.agreement, Some(0.75));
    assert_eq!(calibration.confusion["shadow"]["served"], 1);
    assert_eq!(calibration.confusion["shadow"]["shadow"], 3);
    // The judge said `shadow` every time: no agreement beyond chance.
    assert_eq!(calibration.cohen_kappa, Some(0.0));
}

/// The served requests' ids in the log (JSON Lines, gzip).
fn served_ids(audit: &Path) -> Vec<String> {
    use std::io::Read;
    let mut ids = Vec::new();
    for entry in walk(&audit.join("v1")) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&entry).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["role"] == "served" {
                ids.push(record["request_id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_dry_run_prints_prompts_and_estimate_and_asks_nothing() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::PositionBias).await;
    let config = logged.judge_config(&sim, SHADOW_EXPERIMENT, "");
    let output = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["judge", "--source"])
        .arg(&logged.audit)
        .arg("--config")
        .arg(&config)
        .arg("--rubric")
        .arg(logged.rubric("pairwise"))
        .args([
            "--experiment",
            "pairs",
            "--dry-run",
            "--max-pairs",
            "2",
            "--format",
            "json",
        ])
        .arg("--spool-dir")
        .arg(logged.work.path().join("judge-spool"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["prompts"].as_array().unwrap().len(), 4);
    assert!(report["estimated_usd"].as_f64().unwrap() > 0.0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[Answer A]") && stderr.contains("Be warm."),
        "{stderr}"
    );
    assert_eq!(judge_calls(&sim), 0);
    assert!(!logged.audit.join("feedback").exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rubric_file_is_refused_naming_each_line_and_field() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::PositionBias).await;
    let config = logged.judge_config(
        &sim,
        SHADOW_EXPERIMENT,
        "[feedback.metrics]\nthumbs_up = \"boolean\"\n",
    );
    let rubric = logged.work.path().join("quality.toml");
    std::fs::write(
        &rubric,
        "model = \"judge-model\"\nmode = \"pointwise\"\npass_score = 11\ntimeout_ms = 0\n",
    )
    .unwrap();
    let options = logged.options(config, rubric.clone());
    let error = judge::judge(&logged.source().await, &options)
        .await
        .unwrap_err()
        .to_string();
    let file = rubric.display();
    for expected in [
        format!("{file}:3: pass_score: must be from 1 to 10"),
        format!("{file}:4: timeout_ms: must be at least 1"),
        "criteria: a pointwise rubric needs its criteria".to_owned(),
        "does not declare `judge.quality`: add `\"judge.quality\" = \"float\"`".to_owned(),
    ] {
        assert!(error.contains(&expected), "{expected:?} not in:\n{error}");
    }
    assert_eq!(judge_calls(&sim), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_rate_picks_the_same_items_every_run() {
    let logged = logged_traffic(SHADOW_EXPERIMENT).await;
    let sim = judge_sim(SimJudge::PositionBias).await;
    let config = logged.judge_config(&sim, SHADOW_EXPERIMENT, "");
    let half = JudgeOptions {
        sample_rate: 0.5,
        ..logged.options(config, logged.rubric("pairwise"))
    };
    let dry = logged
        .judge(&JudgeOptions {
            dry_run: true,
            ..half.clone()
        })
        .await;
    let first = logged.judge(&half).await;
    assert!(first.judged > 0 && first.sampled_out > 0, "{first:#?}");
    assert_eq!(first.judged + first.sampled_out, REQUESTS as u64);
    assert_eq!(
        dry.prompts.len() as u64,
        2 * first.judged,
        "the dry run chose the same items"
    );
    let again = logged.judge(&half).await;
    assert_eq!(
        (again.judged, again.already_judged, again.sampled_out),
        (0, first.judged, first.sampled_out),
        "the same items are in and out of the sample"
    );
}

#[test]
fn the_quickstart_rubric_is_valid_against_the_quickstart_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = promptgate_core::config::load_file(
        &root.join("config/quickstart.toml"),
        &promptgate_core::config::LoadOptions::default(),
    )
    .unwrap();
    let snapshot = promptgate::snapshot::Snapshot::new(config);
    let rubric = judge::rubric::load(&root.join("config/judges/helpful.toml"), &snapshot).unwrap();
    assert_eq!(rubric.metric(), "judge.helpful");
    assert_eq!(rubric.mode, judge::Mode::Pairwise);
    assert!(snapshot.experiments["greeting"].shadow.is_some());
}
