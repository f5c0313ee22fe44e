//! The `promptgate` binary: command-line parsing, logging set-up and signal
//! handling. Everything else lives in the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use promptgate::app::App;
use promptgate::exchange::NoSink;
use promptgate::reload::ConfigSource;
use promptgate::server;
use promptgate_core::config::LoadOptions;

#[derive(Parser)]
#[command(
    name = "promptgate",
    version,
    about = "An LLM gateway for prompt experiments with evidence"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The TOML config: a file, or `s3://bucket/key.toml` (prompt files
        /// under the same prefix; the S3 client reads
        /// PROMPTGATE_CONFIG_S3_ENDPOINT, PROMPTGATE_CONFIG_S3_REGION,
        /// PROMPTGATE_CONFIG_S3_FORCE_PATH_STYLE and the AWS_* chain).
        #[arg(long, short)]
        config: String,
        /// Listen on this address instead of `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve the admin API on this address instead of `admin.listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Validate a config file: exit 0 when valid, else list every problem as file:line: field: message.
    CheckConfig {
        /// The TOML config: a file or `s3://bucket/key.toml` (as for `serve`).
        config: String,
    },
    /// Print the SHA-256 to put in `auth.clients[].key_sha256` for a client key read from standard input.
    HashKey,
    /// Compare an experiment's variants from the audit log (see docs/analyze.md).
    Analyze(AnalyzeArgs),
    /// Run a golden-set suite on an experiment's variants and gate the change
    /// (see docs/eval.md): exit 0 when the gate passes, 1 when it fails, 2 on
    /// a config, suite or golden-set error.
    Eval(EvalArgs),
    /// Write golden-set candidates for review from the audit log (see docs/eval.md, "Export").
    ExportDataset(ExportArgs),
    /// Compare a current window of traffic with a baseline (see docs/drift.md); exit 1 on drift.
    Drift(DriftArgs),
    /// Judge an experiment's logged answers with an LLM and write the verdicts as feedback (see docs/judge.md).
    Judge(JudgeArgs),
}

#[derive(clap::Args)]
struct JudgeArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The gateway's TOML config (providers, routes, prices, [audit] the verdicts are written to).
    #[arg(long, short)]
    config: PathBuf,
    /// The rubric file (config/judges/<name>.toml); its name makes the metric `judge.<name>`.
    #[arg(long)]
    rubric: PathBuf,
    /// The experiment id.
    #[arg(long)]
    experiment: String,
    /// Share of the items judged (0–1), the same ones on every run.
    #[arg(long, default_value_t = 1.0)]
    sample_rate: f64,
    /// Judge at most N items (pairs, or answers for pointwise rubrics) in this run.
    #[arg(long, value_name = "N")]
    max_pairs: Option<usize>,
    /// Stop before the judge's spend (priced by [audit.prices]) could pass this many USD.
    #[arg(long)]
    max_usd: Option<f64>,
    /// Questions in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Print the prompts and the cost estimate; ask nothing, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Human labels (JSON Lines of request_id and label): agreement, Cohen's kappa, confusion table.
    #[arg(long, value_name = "LABELS.jsonl")]
    calibrate: Option<PathBuf>,
    /// The spool of the verdicts' feedback records (not a running gateway's).
    #[arg(long, default_value = ".promptgate/judge-spool")]
    spool_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = JudgeFormat::Table)]
    format: JudgeFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JudgeFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The gateway's TOML config (providers, routes, experiments, prices).
    #[arg(long, short)]
    config: PathBuf,
    /// The suite file (config/evals/*.toml).
    #[arg(long)]
    suite: PathBuf,
    /// Ask each case this many times (overrides the suite's `repeat`).
    #[arg(long)]
    repeat: Option<u32>,
    /// Calls in flight at once (overrides the suite's `concurrency`).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Ask every case again instead of reusing cached answers.
    #[arg(long)]
    no_cache: bool,
    /// Where answers are cached, keyed by a hash of the rendered request.
    #[arg(long, default_value = ".promptgate/eval-cache")]
    cache_dir: PathBuf,
    /// What to print (or write to --out).
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    format: EvalFormat,
    /// Write the --format output here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the JSON report (promptgate.eval.v1) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Also write JUnit XML here (one test case per golden case and scorer).
    #[arg(long)]
    junit: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EvalFormat {
    Table,
    Json,
    Html,
    Junit,
}

/// Where the audit log is read from: shared by `analyze` and `export-dataset`.
#[derive(clap::Args)]
struct SourceArgs {
    #[command(flatten)]
    log: LogArgs,
    /// First day (UTC, YYYY-MM-DD) or hour (YYYY-MM-DDTHH) of the partitions to read.
    #[arg(long, value_parser = promptgate_analyze::parse_date)]
    from: Option<String>,
    /// Last day or hour (inclusive).
    #[arg(long, value_parser = promptgate_analyze::parse_date)]
    to: Option<String>,
    /// Report unreadable objects and go on instead of stopping.
    #[arg(long)]
    skip_corrupt: bool,
}

/// Where the audit log is: shared by every command that reads it.
#[derive(clap::Args)]
struct LogArgs {
    /// The audit log: its local directory (`local_dir`) or s3://bucket/prefix.
    #[arg(long)]
    source: String,
    /// S3-compatible endpoint (else AWS_ENDPOINT_URL_S3 or AWS's).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 region (else the AWS environment's, else us-east-1).
    #[arg(long)]
    s3_region: Option<String>,
    /// Path-style S3 URLs (most S3-compatible servers).
    #[arg(long)]
    s3_force_path_style: bool,
}

impl LogArgs {
    async fn open(&self) -> Result<promptgate_analyze::Source, promptgate_analyze::AnalyzeError> {
        let s3 = promptgate_analyze::S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            force_path_style: self.s3_force_path_style,
        };
        promptgate_analyze::Source::open(&self.source, &s3).await
    }
}

impl SourceArgs {
    fn range(&self) -> promptgate_analyze::DateRange {
        promptgate_analyze::DateRange {
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }

    async fn open(&self) -> Result<promptgate_analyze::Source, promptgate_analyze::AnalyzeError> {
        self.log.open().await
    }
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The experiment id.
    #[arg(long)]
    experiment: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The variant the others are compared with (default: `control`, else the first by name).
    #[arg(long)]
    baseline: Option<String>,
    /// Assignment reasons analysed besides `hash` (intent to treat): override, flag, not_enrolled, killswitch, disabled.
    #[arg(long, value_delimiter = ',')]
    include: Vec<String>,
    /// Two-sided confidence level.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Relative lift the "units needed" figure is computed for.
    #[arg(long, default_value_t = 0.05)]
    target_lift: f64,
    /// Units the experiment is planned to reach (tunes the always-valid intervals).
    #[arg(long, default_value_t = 10_000)]
    planned_units: u64,
    /// Seed of the bootstrap and the reservoir samples.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Resamples of the bootstrap intervals for p50/p95 differences.
    #[arg(long, default_value_t = 2_000)]
    bootstrap_resamples: u32,
    /// A JSON Schema file: the share of answers valid against it is compared too.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Also compare within each slice: tag:KEY (a request tag), model, variant_version or client_id; Holm's correction spans every slice.
    #[arg(long, value_name = "SLICE")]
    by: Option<promptgate_analyze::slices::SliceBy>,
    /// Exit with status 3 when the sample-ratio check fails (for CI gates).
    #[arg(long)]
    fail_on_srm: bool,
    /// A client whose feedback counts on any client's request (an outcome
    /// reporter; comma-separated or repeated). Other clients' feedback counts
    /// only on their own requests.
    #[arg(long, value_delimiter = ',')]
    trusted_client: Vec<String>,
    /// The gateway's config file: its `[feedback] trusted_clients` are
    /// added to --trusted-client (nothing else is read, no secret needed).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Only requests of this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Only requests these variants served (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    variant: Vec<String>,
    /// Only requests whose latest feedback meets METRIC=VALUE (also != < <= > >=), e.g. thumbs_up=false; repeat to require several.
    #[arg(long)]
    feedback: Vec<promptgate::eval::export::FeedbackFilter>,
    /// Only requests tagged KEY=VALUE (`x-promptgate-tags`), e.g. doc_type=invoice; repeat to require several.
    #[arg(long)]
    tag: Vec<promptgate::eval::export::TagFilter>,
    /// Only requests with these error classes (`none`: succeeded), e.g. none or stream_error,timeout.
    #[arg(long, value_delimiter = ',')]
    error_class: Vec<String>,
    /// Sample up to N requests of each served variant.
    #[arg(long, value_name = "N", conflicts_with_all = ["sample", "stratify"])]
    per_variant: Option<usize>,
    /// Sample N requests in all (split equally across strata with --stratify).
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// What --sample splits equally across.
    #[arg(long, value_enum, requires = "sample")]
    stratify: Option<promptgate::eval::export::Stratify>,
    /// Seed of the sampling: the same seed picks the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the candidates here (JSON Lines) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DriftArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Only this experiment's requests.
    #[arg(long, conflicts_with = "route")]
    experiment: Option<String>,
    /// Only requests to this model name (a route).
    #[arg(long)]
    route: Option<String>,
    /// The baseline window's first day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH, UTC).
    #[arg(long, value_parser = promptgate_analyze::parse_date)]
    baseline_from: Option<String>,
    /// Its last day or hour (inclusive).
    #[arg(long, value_parser = promptgate_analyze::parse_date)]
    baseline_to: Option<String>,
    /// The current window's first day or hour.
    #[arg(long, value_parser = promptgate_analyze::parse_date)]
    current_from: Option<String>,
    /// Its last day or hour (inclusive).
    #[arg(long, value_parser = promptgate_analyze::parse_date)]
    current_to: Option<String>,
    /// The last N days (ending --until) against the N days before.
    #[arg(long, conflicts_with_all = ["baseline_from", "baseline_to", "current_from", "current_to"])]
    last_days: Option<u16>,
    /// Last day of --last-days (default: today, UTC).
    #[arg(long, value_parser = promptgate_analyze::parse_day)]
    until: Option<String>,
    /// Family-wise false-alarm rate over all signals.
    #[arg(long, default_value_t = 0.01)]
    alpha: f64,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Report unreadable objects and go on instead of stopping.
    #[arg(long)]
    skip_corrupt: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Html,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve(config, listen, admin_listen),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashKey => hash_key(),
        Command::Analyze(args) => analyze(args),
        Command::Eval(args) => Ok(eval(args)),
        Command::Judge(args) => judge(args),
        Command::ExportDataset(args) => export_dataset(args),
        // Exit 1 means drift, so any failure to decide (bad arguments, an
        // unreadable log) exits 2, like clap's own usage errors.
        Command::Drift(args) => drift(args).or_else(|error| {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(2))
        }),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_config(config: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let loaded = runtime.block_on(async {
        let source = ConfigSource::open(config).await?;
        let (loaded, _) = tokio::task::spawn_blocking(move || source.load(&LoadOptions::default()))
            .await
            .context("the config loading task failed")?;
        anyhow::Ok(loaded)
    })?;
    match loaded {
        Ok(loaded) => {
            println!(
                "{config}: valid (version {}, {} providers, {} routes)",
                loaded.version,
                loaded.providers.len(),
                loaded.routes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `--trusted-client` and, with `--config`, the file's
/// `[feedback] trusted_clients`.
fn trusted_clients(args: &AnalyzeArgs) -> anyhow::Result<Vec<String>> {
    let mut trusted = args.trusted_client.clone();
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
        let listed = config
            .get("feedback")
            .and_then(|feedback| feedback.get("trusted_clients"))
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten();
        for id in listed {
            let id = id.as_str().with_context(|| {
                format!(
                    "{}: feedback.trusted_clients must list client ids",
                    path.display()
                )
            })?;
            trusted.push(id.to_owned());
        }
    }
    Ok(trusted)
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    use promptgate_analyze::{self as analyze, Options, Settings};
    anyhow::ensure!(
        args.confidence > 0.0 && args.confidence < 1.0,
        "--confidence must be between 0 and 1 (e.g. 0.95)"
    );
    let json_schema = match &args.json_schema {
        Some(path) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not JSON", path.display()))?,
        ),
        None => None,
    };
    const REASONS: [&str; 5] = ["override", "flag", "not_enrolled", "killswitch", "disabled"];
    if let Some(unknown) = args.include.iter().find(|r| !REASONS.contains(&r.as_str())) {
        anyhow::bail!(
            "--include {unknown}: not an assignment reason (one of {})",
            REASONS.join(", ")
        );
    }
    let mut reasons = vec!["hash".to_owned()];
    reasons.extend(args.include.iter().cloned());
    let options = Options {
        experiment: args.experiment.clone(),
        range: args.source.range(),
        assignment_reasons: reasons,
        skip_corrupt: args.source.skip_corrupt,
        progress: std::io::stderr().is_terminal(),
        json_schema,
        by: args.by.clone(),
        trusted_clients: trusted_clients(&args)?,
        settings: Settings {
            confidence: args.confidence,
            baseline: args.baseline.clone(),
            target_lift: args.target_lift,
            planned_units: args.planned_units,
            seed: args.seed,
            bootstrap_resamples: args.bootstrap_resamples.max(1),
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(async {
        let source = args.source.open().await?;
        analyze::analyze(&source, &options).await
    })?;
    let text = match args.format {
        ReportFormat::Table => analyze::render::table(&report),
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Html => analyze::html::page(&report),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    // A table on standard output shows its warnings; JSON, HTML or a file
    // would keep them from whoever runs the command.
    if args.format != ReportFormat::Table || args.out.is_some() {
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
    }
    match report.srm.as_ref().filter(|s| s.mismatch) {
        Some(srm) if args.fail_on_srm => {
            let split: Vec<String> = srm
                .observed_units
                .iter()
                .map(|(name, units)| {
                    let expected = srm.expected_share.get(name).copied().unwrap_or(0.0);
                    format!("{name} {units} (expected {:.1}%)", expected * 100.0)
                })
                .collect();
            eprintln!(
                "sample ratio mismatch in experiment `{}`: units {} (χ² = {:.2}, p = {}); exit status 3 (--fail-on-srm)",
                report.experiment,
                split.join(", "),
                srm.statistic,
                analyze::render::p_text(srm.p_value)
            );
            Ok(ExitCode::from(3))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Exit status 2 for anything that kept the gate from being decided.
fn eval(args: EvalArgs) -> ExitCode {
    match run_eval(&args) {
        Ok(passed) => ExitCode::from(if passed { 0 } else { 1 }),
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::from(2)
        }
    }
}

fn run_eval(args: &EvalArgs) -> anyhow::Result<bool> {
    use promptgate::eval::{self, EvalOptions};
    let options = EvalOptions {
        config: args.config.clone(),
        suite: args.suite.clone(),
        repeat: args.repeat,
        concurrency: args.concurrency,
        cache_dir: (!args.no_cache).then(|| args.cache_dir.clone()),
        progress: std::io::stderr().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(eval::evaluate(&options))?;
    let render = |format: EvalFormat| -> anyhow::Result<String> {
        Ok(match format {
            EvalFormat::Table => eval::render::table(&report),
            EvalFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
            EvalFormat::Html => eval::html::page(&report),
            EvalFormat::Junit => eval::junit::junit(&report),
        })
    };
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    match &args.out {
        Some(path) => write(path, render(args.format)?)?,
        None => print!("{}", render(args.format)?),
    }
    for (path, format) in [
        (&args.json, EvalFormat::Json),
        (&args.html, EvalFormat::Html),
        (&args.junit, EvalFormat::Junit),
    ] {
        if let Some(path) = path {
            write(path, render(format)?)?;
        }
    }
    if args.format != EvalFormat::Table || args.out.is_some() {
        for warning in &report.warnings {
            eprintln!("warning: {warning}");
        }
        eprintln!(
            "suite `{}`: gate {}",
            report.suite,
            if report.passed { "passed" } else { "FAILED" }
        );
    }
    Ok(report.passed)
}

fn judge(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    use promptgate::judge::{self, JudgeOptions};
    let options = JudgeOptions {
        config: args.config.clone(),
        rubric: args.rubric.clone(),
        experiment: args.experiment.clone(),
        range: args.source.range(),
        skip_corrupt: args.source.skip_corrupt,
        sample_rate: args.sample_rate,
        max_items: args.max_pairs,
        max_usd: args.max_usd,
        concurrency: args.concurrency,
        dry_run: args.dry_run,
        calibrate: args.calibrate.clone(),
        spool_dir: args.spool_dir.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(async {
        let source = args.source.open().await?;
        judge::judge(&source, &options)
            .await
            .map_err(anyhow::Error::from)
    })?;
    if args.dry_run {
        for prompt in &report.prompts {
            eprintln!("{prompt}\n");
        }
    }
    match args.format {
        JudgeFormat::Table => print!("{}", judge::table(&report)),
        JudgeFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn export_dataset(args: ExportArgs) -> anyhow::Result<ExitCode> {
    use promptgate::eval::export::{self, ExportOptions, Sampling, Stratify};
    let sampling = match (args.per_variant, args.sample) {
        (Some(per), _) => Sampling::PerStratum {
            per,
            by: Stratify::Variant,
        },
        (None, Some(total)) => Sampling::Total {
            total,
            by: args.stratify,
        },
        (None, None) => Sampling::All,
    };
    let options = ExportOptions {
        range: args.source.range(),
        experiment: args.experiment,
        variants: args.variant,
        error_classes: args.error_class,
        feedback: args.feedback,
        tags: args.tag,
        sampling,
        seed: args.seed,
        skip_corrupt: args.source.skip_corrupt,
    };
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let summary = runtime.block_on(async {
        let source = args.source.open().await?;
        export::export(&source, &options, &mut out)
            .await
            .map_err(anyhow::Error::from)
    })?;
    let counts = |by: &std::collections::BTreeMap<String, u64>| {
        by.iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let exported: u64 = summary.exported.values().sum();
    let matched: u64 = summary.matched.values().sum();
    eprintln!(
        "{exported} candidates written ({}) of {matched} matching requests ({}) in {} records",
        counts(&summary.exported),
        counts(&summary.matched),
        summary.records
    );
    for (reason, n) in &summary.unusable {
        eprintln!("  {n} records skipped: {reason}");
    }
    for corrupt in &summary.corrupt_objects {
        eprintln!("warning: skipped {}: {}", corrupt.object, corrupt.reason);
    }
    if exported == 0 {
        eprintln!("warning: no request matched the filters");
    }
    Ok(ExitCode::SUCCESS)
}

fn drift(args: DriftArgs) -> anyhow::Result<ExitCode> {
    use promptgate_analyze::DateRange;
    use promptgate_analyze::drift::{self, Options, Scope};
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha < 1.0,
        "--alpha must be between 0 and 1"
    );
    let (baseline, current) = match args.last_days {
        Some(days) => drift_windows(days, args.until.as_deref())?,
        None => {
            anyhow::ensure!(
                args.baseline_to.is_some() && args.current_from.is_some(),
                "give the windows: --baseline-to and --current-from (with optional --baseline-from, --current-to), or --last-days N"
            );
            (
                DateRange {
                    from: args.baseline_from.clone(),
                    to: args.baseline_to.clone(),
                },
                DateRange {
                    from: args.current_from.clone(),
                    to: args.current_to.clone(),
                },
            )
        }
    };
    let scope = match (&args.experiment, &args.route) {
        (Some(id), _) => Scope::Experiment(id.clone()),
        (None, Some(model)) => Scope::Route(model.clone()),
        (None, None) => Scope::All,
    };
    let options = Options {
        scope,
        baseline,
        current,
        alpha: args.alpha,
        skip_corrupt: args.skip_corrupt,
        seed: args.seed,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(async {
        let source = args.log.open().await?;
        drift::drift(&source, &options).await
    })?;
    let text = match args.format {
        ReportFormat::Table => drift::render::table(&report),
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Html => drift::render::page(&report),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(if report.drift {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--last-days N`: the current window ends on `until` (today by default).
fn drift_windows(
    days: u16,
    until: Option<&str>,
) -> anyhow::Result<(promptgate_analyze::DateRange, promptgate_analyze::DateRange)> {
    use promptgate_analyze::DateRange;
    anyhow::ensure!(days > 0, "--last-days must be at least 1");
    let end = match until {
        Some(text) => promptgate_log::time::parse_date(text).context("--until")?,
        None => time::OffsetDateTime::now_utc().date(),
    };
    let day = |back: i64| (end - time::Duration::days(back)).to_string();
    let n = i64::from(days);
    Ok((
        DateRange {
            from: Some(day(2 * n - 1)),
            to: Some(day(n)),
        },
        DateRange {
            from: Some(day(n - 1)),
            to: Some(day(0)),
        },
    ))
}

fn hash_key() -> anyhow::Result<ExitCode> {
    let mut key = String::new();
    std::io::stdin()
        .read_line(&mut key)
        .context("reading the key from standard input")?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "no key on standard input");
    println!("{}", server::hash_key(key));
    Ok(ExitCode::SUCCESS)
}

fn serve(
    config: String,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let options = LoadOptions { listen_override: listen, admin_listen_override: admin_listen };
        let source = ConfigSource::open(&config).await?;
        let app = App::start(source, options, Arc::new(NoSink)).await?;
        let version = app.reloader.status().version;
        tracing::info!(local = %app.addr, admin = %app.admin_addr, %config, %version, "promptgate listening");
        shutdown.await;
        app.shutdown().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Registers the SIGTERM (Kubernetes) and SIGINT (Ctrl-C) handlers at once —
/// before the listeners open, so an early signal still gets a graceful
/// drain instead of the default immediate exit — and returns a future that
/// resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    })
}
