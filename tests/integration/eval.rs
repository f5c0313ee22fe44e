//! `promptgate eval` end to end: the binary (exit codes, the four report
//! formats) and the library (`promptgate::eval::evaluate`) against the
//! simulated provider, whose answers can be made wrong for one model on a
//! share of inputs (an injected regression) and whose judge has a known bias.

use std::path::{Path, PathBuf};
use std::process::Output;

use promptgate::eval::{self, EvalOptions};
use promptgate::simulator::{SimConfig, SimJudge, Simulator, WrongAnswers};
use serde_json::Value;

const CASES: usize = 60;

/// A config whose experiment `extract` has variants `base` (model
/// `sim-base`) and `candidate` (model `candidate_model`), both on the simulator.
fn config(sim_url: &str, candidate_model: &str, candidate_system: &str) -> String {
    format!(
        r#"[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "{sim_url}"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.extract]
unit_key = {{ header = "x-user-id" }}
[[experiments.extract.variants]]
name = "base"
weight = 50
model = "sim-base"
providers = ["sim"]
system = "Repeat the request."
[[experiments.extract.variants]]
name = "candidate"
weight = 50
model = "{candidate_model}"
providers = ["sim"]
system = "{candidate_system}"
"#
    )
}

fn case_input(i: usize) -> String {
    format!("Order number {i} was shipped")
}

fn golden() -> String {
    (0..CASES)
        .map(|i| {
            let tier = if i % 3 == 0 { "gold" } else { "basic" };
            format!(
                "{{\"id\": \"case-{i}\", \"input\": \"{}\", \"expected\": \"Order number {i} \", \"tags\": {{\"tier\": \"{tier}\"}}}}\n",
                case_input(i)
            )
        })
        .collect()
}

const SUITE: &str = r#"golden_set = "golden.jsonl"
experiment = "extract"
baseline = "base"
concurrency = 4

[[scorers]]
name = "mentions_order"
kind = "contains"
min = 0.5
max_drop = 0.05
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str, suite: &str, golden: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        std::fs::write(dir.path().join("suite.toml"), suite).unwrap();
        std::fs::write(dir.path().join("golden.jsonl"), golden).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, cache: bool) -> EvalOptions {
        EvalOptions {
            config: self.path("gateway.toml"),
            suite: self.path("suite.toml"),
            repeat: None,
            concurrency: None,
            cache_dir: cache.then(|| self.path("cache")),
            progress: false,
        }
    }

    /// Runs the binary with `extra` arguments, the reports written beside the suite.
    async fn run_binary(&self, extra: &[&str]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"));
        command
            .arg("eval")
            .arg("--config")
            .arg(self.path("gateway.toml"))
            .arg("--suite")
            .arg(self.path("suite.toml"))
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .args(extra)
            .env("RUST_LOG", "warn");
        // The simulator runs on this test's runtime: wait for the child off it.
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

fn wrong_candidate() -> WrongAnswers {
    WrongAnswers {
        model: "sim-candidate".into(),
        percent: 20,
    }
}

/// The cases the simulator answers wrong for the candidate, by its own rule.
fn expected_wrong() -> Vec<String> {
    let rule = wrong_candidate();
    (0..CASES)
        .filter(|&i| rule.hits(&case_input(i)))
        .map(|i| format!("case-{i}"))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_regression_fails_the_gate_and_is_named_in_every_report() {
    let sim = Simulator::start(SimConfig {
        wrong_answers: Some(wrong_candidate()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let setup = Setup::new(
        &config(
            &sim.openai_base_url(),
            "sim-candidate",
            "Repeat the request.",
        ),
        SUITE,
        &golden(),
    );
    let wrong = expected_wrong();
    assert!(
        (6..=18).contains(&wrong.len()),
        "the rule should hit about 20 % of {CASES} inputs, hit {}",
        wrong.len()
    );
    let json = setup.path("report.json");
    let html = setup.path("report.html");
    let junit = setup.path("junit.xml");
    let output = setup
        .run_binary(&[
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ])
        .await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&output.stderr)
    );

    // Table: the verdict, the failing check, a failing case.
    assert!(stdout.contains("GATE FAILED"), "{stdout}");
    let failing_line = stdout
        .lines()
        .find(|l| l.starts_with("mentions_order") && l.contains("candidate"))
        .unwrap();
    assert!(failing_line.contains("FAIL: drop"), "{failing_line}");
    assert!(
        stdout.contains(&format!("{} [candidate] mentions_order", wrong[0])),
        "{stdout}"
    );

    // JSON: the failed check with its observed drop and paired tests.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["schema"], "promptgate.eval.v1");
    assert_eq!(report["passed"], false);
    let check = report["gate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["variant"] == "candidate")
        .unwrap();
    assert_eq!(check["passed"], false);
    let drop = check["drop"].as_f64().unwrap();
    assert!(
        (drop - wrong.len() as f64 / CASES as f64).abs() < 1e-12,
        "{check}"
    );
    assert_eq!(check["mcnemar"]["discordant"], wrong.len());
    assert_eq!(check["significant_drop"], true);
    // The paired tests against scipy/statsmodels on the same outcomes
    // (tests/eval_reference/gate.py recomputes the wrong cases on its own).
    let reference: Value =
        serde_json::from_str(include_str!("../eval_reference/gate.json")).unwrap();
    assert_eq!(reference["wrong_cases"], serde_json::json!(wrong));
    for (ours, theirs) in [
        (&check["mcnemar"]["p_value"], &reference["mcnemar_p"]),
        (&check["wilcoxon"]["p_value"], &reference["wilcoxon_p"]),
    ] {
        let (ours, theirs) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs,
            "{ours} vs scipy {theirs}"
        );
    }
    let failed_ids: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case["variants"][1]["scores"][0]["passed"] == false)
        .map(|case| case["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed_ids, wrong);
    let base = &report["variants"][0];
    assert_eq!(
        (base["calls"].as_u64(), base["failed_calls"].as_u64()),
        (Some(CASES as u64), Some(0))
    );
    assert!(
        report["slices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tag"] == "tier" && s["value"] == "gold")
    );

    // HTML: the verdict and the failing cases side by side.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("gate failed"));
    for id in &wrong {
        assert!(
            page.contains(&format!("{id} <small>")),
            "{id} missing from the HTML"
        );
    }
    assert!(page.contains("Slices by tag"));

    // JUnit: one failure per wrong case, plus the gate's.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("tests=\"{}\"", 2 * CASES + 2)),
        "{xml}"
    );
    assert!(xml.contains(&format!("failures=\"{}\"", wrong.len() + 1)));
    for id in &wrong {
        assert!(xml.contains(&format!("name=\"{id} [mentions_order]\"")));
    }
    assert!(
        xml.contains("name=\"mentions_order [candidate]\">\n      <failure message=\"drop"),
        "{xml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equal_quality_change_passes() {
    let sim = Simulator::start(SimConfig {
        wrong_answers: Some(wrong_candidate()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // A reworded prompt on another model that the rule does not touch.
    let setup = Setup::new(
        &config(&sim.openai_base_url(), "sim-other", "Say it back."),
        SUITE,
        &golden(),
    );
    let output = setup.run_binary(&["--format", "json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["passed"], true);
    for check in report["gate"].as_array().unwrap() {
        assert_eq!(check["mean"], 1.0, "{check}");
    }
    assert!(text(&output.stderr).contains("gate passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_an_unchanged_variant_calls_no_provider() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let setup = Setup::new(
        &config(&sim.openai_base_url(), "sim-other", "Say it back."),
        SUITE,
        &golden(),
    );
    let first = eval::evaluate(&setup.options(true)).await.unwrap();
    assert_eq!(sim.received().len(), 2 * CASES);
    assert!(first.variants.iter().all(|v| v.cached_calls == 0));

    let second = eval::evaluate(&setup.options(true)).await.unwrap();
    assert_eq!(
        sim.received().len(),
        2 * CASES,
        "the cached run asked the provider"
    );
    assert!(
        second
            .variants
            .iter()
            .all(|v| v.cached_calls == CASES as u64)
    );
    assert_eq!(
        serde_json::to_value(&first.gate).unwrap(),
        serde_json::to_value(&second.gate).unwrap()
    );

    // A changed prompt is asked again; the unchanged baseline is not.
    std::fs::write(
        setup.path("gateway.toml"),
        config(
            &sim.openai_base_url(),
            "sim-other",
            "Say it back, politely.",
        ),
    )
    .unwrap();
    let third = eval::evaluate(&setup.options(true)).await.unwrap();
    assert_eq!(sim.received().len(), 3 * CASES);
    assert_eq!(third.variants[0].cached_calls, CASES as u64);
    assert_eq!(third.variants[1].cached_calls, 0);

    // --no-cache asks everything.
    eval::evaluate(&setup.options(false)).await.unwrap();
    assert_eq!(sim.received().len(), 5 * CASES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_and_temperature_reach_the_provider() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let setup = Setup::new(
        &config(&sim.openai_base_url(), "sim-other", "Say it back."),
        &SUITE.replace("concurrency = 4", "concurrency = 4\ntemperature = 0.3"),
        &golden(),
    );
    let mut options = setup.options(true);
    options.repeat = Some(2);
    let report = eval::evaluate(&options).await.unwrap();
    assert_eq!(report.repeat, 2);
    let received = sim.received();
    assert_eq!(received.len(), 2 * 2 * CASES);
    assert!(received.iter().all(|r| r.json()["temperature"] == 0.3));
    assert!(
        received
            .iter()
            .all(|r| r.json().get("promptgate").is_none())
    );
}

fn judge_suite(pairwise_only: bool) -> String {
    let rubric = if pairwise_only {
        String::new()
    } else {
        "rubric = \"The answer names the model sim-other.\"\n".to_owned()
    };
    format!("{SUITE}\n[judge]\nmodel = \"judge-model\"\npairwise = true\n{rubric}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_biased_judge_yields_ties_never_wins() {
    let sim = Simulator::start(SimConfig {
        judge: Some(SimJudge::PositionBias),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let setup = Setup::new(
        &config(&sim.openai_base_url(), "sim-other", "Say it back."),
        &judge_suite(true),
        &golden(),
    );
    let report = eval::evaluate(&setup.options(false)).await.unwrap();
    let pair = &report.pairwise[0];
    assert_eq!(pair.candidate, "candidate");
    assert_eq!(
        (pair.tally.wins, pair.tally.losses, pair.tally.ties),
        (0, 0, CASES as u64)
    );
    assert_eq!(pair.consistency_rate, Some(0.0));
    // Both orders were asked for every case.
    let judged = sim
        .received()
        .iter()
        .filter(|r| r.json()["model"] == "judge-model")
        .count();
    assert_eq!(judged, 2 * CASES);
    assert!(promptgate::eval::render::table(&report).contains("position consistency 0.0%"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_judge_gives_wins_to_the_preferred_variant() {
    let sim = Simulator::start(SimConfig {
        // The simulator's answers name their model: this judge prefers the candidate's.
        judge: Some(SimJudge::Prefers("sim-other".into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let setup = Setup::new(
        &config(&sim.openai_base_url(), "sim-other", "Say it back."),
        &judge_suite(false),
        &golden(),
    );
    let report = eval::evaluate(&setup.options(false)).await.unwrap();
    let pair = &report.pairwise[0];
    assert_eq!(
        (pair.tally.wins, pair.tally.losses, pair.tally.ties),
        (CASES as u64, 0, 0)
    );
    assert_eq!(pair.consistency_rate, Some(1.0));
    // The rubric score is a scorer named `judge`: 2/10 for the baseline, 9/10 for the candidate.
    let judge = report.scorer_index(eval::JUDGE_SCORER).unwrap();
    let means = [0, 1].map(|v| report.variants[v].scores[judge].mean);
    assert!((means[0] - 1.0 / 9.0).abs() < 1e-12, "{means:?}");
    assert!((means[1] - 8.0 / 9.0).abs() < 1e-12, "{means:?}");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_that_is_the_candidates_model_is_warned_about() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let setup = Setup::new(
        &config(&sim.openai_base_url(), "judge-model", "Say it back."),
        &judge_suite(true).replace(
            "pairwise = true",
            "pairwise = false\nrubric = \"Is it right?\"",
        ),
        &golden(),
    );
    let report = eval::evaluate(&setup.options(false)).await.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("`judge-model` is also the model of `candidate`")),
        "{:?}",
        report.warnings
    );
}

/// Runs the binary on a broken input and returns its standard error, which
/// must come with exit status 2 and no provider call.
async fn refused(config_text: &str, suite: &str, golden: &str, sim: &Simulator) -> String {
    let setup = Setup::new(config_text, suite, golden);
    let output = setup.run_binary(&[]).await;
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    assert!(
        sim.received().is_empty(),
        "a provider was called before the error"
    );
    let dir = setup.dir.path().display().to_string();
    stderr.replace(&format!("{dir}/"), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_precise_error_with_exit_2_and_nothing_runs() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let url = sim.openai_base_url();
    let good_config = config(&url, "sim-other", "Say it back.");

    let malformed = format!(
        "{}{{\"id\": \"x\"\nnot json\n{{\"id\": \"y\", \"input\": 4}}\n",
        golden()
    );
    let stderr = refused(&good_config, SUITE, &malformed, &sim).await;
    let n = CASES + 1;
    assert!(
        stderr.contains(&format!("golden.jsonl:{n}: not JSON")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("golden.jsonl:{}: not JSON", n + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("golden.jsonl:{}: input: must be a string", n + 2)),
        "{stderr}"
    );

    let unknown_kind = SUITE.replace("kind = \"contains\"", "kind = \"fuzzy\"");
    let stderr = refused(&good_config, &unknown_kind, &golden(), &sim).await;
    assert!(
        stderr.starts_with("suite.toml:8: scorers[0].kind: unknown value `fuzzy`, expected one of `exact_match`, `contains`"),
        "{stderr}"
    );

    let unknown_experiment = SUITE.replace("experiment = \"extract\"", "experiment = \"extrakt\"");
    let stderr = refused(&good_config, &unknown_experiment, &golden(), &sim).await;
    assert!(
        stderr.contains(
            "suite.toml:2: experiment: no experiment `extrakt` in the config (it has: extract)"
        ),
        "{stderr}"
    );

    let unknown_variant =
        SUITE.replace("baseline = \"base\"", "variants = [\"base\", \"candidat\"]");
    let stderr = refused(&good_config, &unknown_variant, &golden(), &sim).await;
    assert!(
        stderr.contains("suite.toml:3: variants[1]: experiment `extract` has no variant `candidat` (it has: base, candidate)"),
        "{stderr}"
    );

    let templated = good_config.replace(
        "system = \"Say it back.\"",
        "system = \"Say it back.\"\nuser = \"Document: {{document}}\"\nmessages = \"replace\"",
    );
    let stderr = refused(&templated, SUITE, &golden(), &sim).await;
    assert!(
        stderr.contains("golden.jsonl:1: case `case-0`, variant `candidate`:"),
        "{stderr}"
    );
    assert!(stderr.contains("document"), "{stderr}");

    let no_expected = golden().replace(", \"expected\": \"Order number 3 \"", "");
    let stderr = refused(&good_config, SUITE, &no_expected, &sim).await;
    assert!(
        stderr.contains("golden.jsonl:4: expected: scorer `mentions_order` needs the expected answer as a string"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_is_a_failed_case_never_skipped() {
    // A port nothing listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let text_config = config(&sim.openai_base_url(), "sim-other", "Say it back.").replace(
        "[[routes]]",
        &format!("[providers.gone]\nkind = \"openai\"\nbase_url = \"http://{closed}/v1\"\nmax_retries = 0\n[[routes]]"),
    );
    // The candidate goes to the unreachable provider.
    let text_config = text_config.replacen(
        "providers = [\"sim\"]\nsystem = \"Say it back.\"",
        "providers = [\"gone\"]\nsystem = \"Say it back.\"",
        1,
    );
    let setup = Setup::new(&text_config, SUITE, &golden());
    let report = eval::evaluate(&setup.options(true)).await.unwrap();
    assert!(!report.passed);
    let candidate = &report.variants[1];
    assert_eq!(
        (candidate.calls, candidate.failed_calls),
        (CASES as u64, CASES as u64)
    );
    let case = &report.results[0].variants[1];
    assert!(case.answer.is_none());
    assert!(
        case.error.as_deref().unwrap().contains("gone"),
        "{:?}",
        case.error
    );
    assert!(
        case.scores[0]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("no answer:")
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains(&format!("{CASES} of {CASES} calls got no answer")))
    );
    // Failures are not cached: nothing under the cache for the candidate.
    let again = eval::evaluate(&setup.options(true)).await.unwrap();
    assert_eq!(again.variants[1].cached_calls, 0);
    assert_eq!(again.variants[0].cached_calls, CASES as u64);
}

/// The quickstart's suites pass against the demo provider with no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_suites_pass_on_the_demo_provider() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for suite in ["config/evals/greeting.toml", "config/evals/invoices.toml"] {
        let report = eval::evaluate(&EvalOptions {
            config: root.join("config/quickstart.toml"),
            suite: root.join(suite),
            repeat: None,
            concurrency: None,
            cache_dir: None,
            progress: false,
        })
        .await
        .unwrap();
        assert!(report.passed, "{suite}: {}", eval::render::table(&report));
        assert!(report.cases >= 5);
        assert_eq!(report.variants.len(), 2);
    }
}
