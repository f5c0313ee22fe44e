//! What `promptgate analyze` tells the person running it: where the audit
//! log is when `--source` misses it (directory and S3), why `--fail-on-srm`
//! stops, that every verdict under a sample ratio mismatch is suspect (table,
//! JSON, HTML), that a log without unit keys had no sample-ratio check — and
//! the HTML page as Chromium lays it out: no label outside its chart on long
//! variant names, one day of data or several (`tests/run` installs Debian's
//! `chromium`; without it, and outside CI, that test says it skipped).

use crate::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use promptgate_analyze::report::SUSPECT_SRM;
use promptgate_analyze::synthetic::SyntheticVariant;
use promptgate_analyze::{self as analyze, Report, S3Options, Source};
use serde_json::Value;
use support::analyze::synthetic_log as log;

fn variant(name: &str, thumbs_up_rate: f64, latency_median_ms: f64) -> SyntheticVariant {
    SyntheticVariant {
        name: name.into(),
        weight: 50.0,
        thumbs_up_rate,
        latency_median_ms,
        lost_share: 0.0,
    }
}

/// A 50/50 experiment whose treatment lost 15 % of its units' records.
fn skewed(root: &Path) {
    let mut broken = variant("treatment", 0.4, 280.0);
    broken.lost_share = 0.15;
    log(
        3,
        "2026-11-20",
        vec![variant("control", 0.3, 300.0), broken],
        4_000,
    )
    .write(root)
    .unwrap();
}

/// `control` (thumbs up 30 %) against `b`, 50/50, on 2026-11-20.
fn two_variants(seed: u64, b_thumbs_up_rate: f64, units: u64, root: &Path) {
    let variants = vec![
        variant("control", 0.3, 300.0),
        variant("b", b_thumbs_up_rate, 300.0),
    ];
    log(seed, "2026-11-20", variants, units)
        .write(root)
        .unwrap();
}

/// The `--format json` report of the log under `root`.
fn json_report(root: &Path) -> Value {
    let output = analyze_cli(root.to_str().unwrap(), &["--format", "json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn analyze_cli(source: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["analyze", "--source", source, "--experiment", "exp"])
        .args(["--bootstrap-resamples", "200"])
        .args(extra)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The report of `root`; with `by`, each slice compared too (`--by`).
async fn report_by(root: &Path, by: Option<&str>) -> Report {
    let source = Source::open(root.to_str().unwrap(), &S3Options::default())
        .await
        .unwrap();
    let mut options = support::analyze::options("exp");
    options.by = by.map(|by| by.parse().unwrap());
    analyze::analyze(&source, &options).await.unwrap()
}

#[test]
fn a_source_beside_the_audit_log_points_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let audit = data.join("audit");
    log(1, "2026-11-20", vec![variant("control", 0.3, 300.0)], 50)
        .write(&audit)
        .unwrap();
    std::fs::create_dir_all(data.join("spool")).unwrap();
    let data = data.to_str().unwrap();
    let audit = audit.to_str().unwrap();

    // One level too high: the log's folder is named.
    let above = analyze_cli(data, &[]);
    assert_eq!(above.status.code(), Some(1));
    assert_eq!(
        text(&above.stderr).trim_end(),
        format!(
            "error: no audit objects under {data}/ (expected {data}/v1/dt=YYYY-MM-DD/…); did you mean {audit}?"
        )
    );
    // One level too deep (the request table's folder): its parent.
    let below = analyze_cli(&format!("{audit}/v1"), &[]);
    assert!(
        text(&below.stderr).contains(&format!("; did you mean {audit}?")),
        "{}",
        text(&below.stderr)
    );
    // Nowhere near: what to give instead.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let nowhere = analyze_cli(empty.to_str().unwrap(), &[]);
    assert!(
        text(&nowhere.stderr).contains("the folder that holds v1/"),
        "{}",
        text(&nowhere.stderr)
    );
    // The right folder, the wrong days: the days it holds.
    let outside = analyze_cli(audit, &["--from", "2026-12-01"]);
    assert!(
        text(&outside.stderr).contains(
            "between 2026-12-01 and the last day: it holds dt=2026-11-20 to dt=2026-11-20"
        ),
        "{}",
        text(&outside.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_prefix_above_the_audit_log_points_to_it() {
    use support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
    let s3 = S3Server::start();
    s3.create_bucket("logs").await;
    let dir = tempfile::tempdir().unwrap();
    log(2, "2026-11-20", vec![variant("control", 0.3, 300.0)], 50)
        .write(dir.path())
        .unwrap();
    let client = s3.client().await;
    for file in files_under(dir.path()) {
        let relative = file.strip_prefix(dir.path()).unwrap().to_str().unwrap();
        client
            .put_object()
            .bucket("logs")
            .key(format!("tenant/audit/{relative}"))
            .body(std::fs::read(&file).unwrap().into())
            .send()
            .await
            .unwrap();
    }
    let run = |source: &str| {
        Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["analyze", "--source", source, "--experiment", "exp"])
            .args(["--s3-endpoint", &s3.endpoint, "--s3-force-path-style"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap()
    };
    for (source, expected) in [
        ("s3://logs", "s3://logs/tenant/audit"),
        ("s3://logs/tenant", "s3://logs/tenant/audit"),
        ("s3://logs/tenant/audit/v1", "s3://logs/tenant/audit"),
    ] {
        let output = run(source);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{source}: {stderr}");
        assert!(
            stderr.contains("no audit objects under s3://")
                && stderr.contains(&format!("did you mean {expected}?")),
            "{source}: {stderr}"
        );
    }
    let found = run("s3://logs/tenant/audit");
    assert!(found.status.success(), "{}", text(&found.stderr));
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn fail_on_srm_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    skewed(dir.path());
    let source = dir.path().to_str().unwrap();
    let plain = analyze_cli(source, &[]);
    assert_eq!(plain.status.code(), Some(0));
    assert_eq!(
        text(&plain.stderr),
        "",
        "the table on stdout carries the warnings"
    );
    let gated = analyze_cli(source, &["--fail-on-srm"]);
    assert_eq!(gated.status.code(), Some(3));
    let stderr = text(&gated.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    for part in [
        "sample ratio mismatch in experiment `exp`",
        "control ",
        "treatment ",
        "(expected 50.0%)",
        "p = <0.0001",
        "exit status 3 (--fail-on-srm)",
    ] {
        assert!(lines[0].contains(part), "{part} missing: {stderr}");
    }
}

#[test]
fn under_srm_every_verdict_is_suspect_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    skewed(dir.path());
    let source = dir.path().to_str().unwrap();
    let prefix = format!("suspect: {SUSPECT_SRM} — ");

    let table = text(&analyze_cli(source, &[]).stdout);
    let comparisons = &table[table.find("Comparisons against").unwrap()..];
    let verdicts: Vec<&str> = comparisons
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("      "))
        .collect();
    assert!(verdicts.len() >= 2, "{table}");
    for line in &verdicts {
        assert!(line.trim_start().starts_with(&prefix), "{line}");
    }

    let json = json_report(dir.path());
    let comparisons = json["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), verdicts.len());
    for c in comparisons {
        assert_eq!(c["suspect"], SUSPECT_SRM, "{c:#}");
        assert!(c["verdict"].as_str().unwrap().starts_with(&prefix), "{c:#}");
    }

    let html = text(&analyze_cli(source, &["--format", "html"]).stdout);
    let start = html.find("<h2>Verdicts</h2>").unwrap();
    let end = html.find("<h2>Confidence intervals").unwrap();
    let list = &html[start..end];
    assert_eq!(list.matches("<li").count(), comparisons.len(), "{list}");
    assert_eq!(
        list.matches(r#"<span class="badge suspect">suspect</span>"#)
            .count(),
        comparisons.len(),
        "{list}"
    );
    assert_eq!(list.matches(&prefix).count(), comparisons.len(), "{list}");

    // A healthy split marks nothing.
    let healthy = tempfile::tempdir().unwrap();
    two_variants(4, 0.4, 2_000, healthy.path());
    for c in json_report(healthy.path())["comparisons"]
        .as_array()
        .unwrap()
    {
        assert!(c["suspect"].is_null(), "{c:#}");
        assert!(!c["verdict"].as_str().unwrap().starts_with("suspect"));
    }
}

/// Rewrites every request record under `root` with `unit_key_hash: null`
/// in the objects whose index passes `which` — as a log from elsewhere, or
/// built by hand, may look.
fn drop_unit_keys(root: &Path, which: impl Fn(usize) -> bool) {
    let mut objects = files_under(&root.join("v1"));
    objects.sort();
    for (_, object) in objects.iter().enumerate().filter(|(i, _)| which(*i)) {
        let mut lines = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(object).unwrap())
            .read_to_string(&mut lines)
            .unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for line in lines.lines() {
            let mut record: Value = serde_json::from_str(line).unwrap();
            record["unit_key_hash"] = Value::Null;
            writeln!(gzip, "{record}").unwrap();
        }
        std::fs::write(object, gzip.finish().unwrap()).unwrap();
    }
}

#[test]
fn a_log_without_unit_keys_says_the_sample_ratio_check_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    two_variants(5, 0.3, 1_000, dir.path());
    drop_unit_keys(dir.path(), |_| true);
    let source = dir.path().to_str().unwrap();
    let why = "no analysed request has a unit_key_hash";

    let json = analyze_cli(source, &["--format", "json"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(report["srm"].is_null());
    let warning = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|w| w.starts_with(why))
        .unwrap_or_else(|| panic!("no warning: {:#}", report["warnings"]));
    assert!(
        warning.contains("sample-ratio check") && warning.contains("not run"),
        "{warning}"
    );
    assert!(
        text(&json.stderr).contains(&format!("warning: {why}")),
        "stderr: {}",
        text(&json.stderr)
    );

    let table = text(&analyze_cli(source, &[]).stdout);
    assert!(table.contains(&format!("!! {why}")), "{table}");
    let html = analyze_cli(source, &["--format", "html"]);
    let page = text(&html.stdout);
    let warnings = &page[page.find(r#"<ul class="warnings">"#).unwrap()..];
    assert!(
        warnings[..warnings.find("</ul>").unwrap()].contains(why),
        "{page}"
    );
    assert!(text(&html.stderr).contains(why));

    // Keys missing from some records only: the check runs on the others,
    // and says how many it left out.
    let partial = tempfile::tempdir().unwrap();
    two_variants(6, 0.3, 1_000, partial.path());
    drop_unit_keys(partial.path(), |index| index == 0);
    let report = json_report(partial.path());
    assert!(!report["srm"].is_null());
    let units: u64 = report["srm"]["observed_units"]
        .as_object()
        .unwrap()
        .values()
        .map(|u| u.as_u64().unwrap())
        .sum();
    assert!(units < 1_000 && units > 0, "{units}");
    let left_out = format!(
        "{} of 1000 analysed requests have no unit_key_hash",
        1_000 - units
    );
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().starts_with(&left_out)),
        "{left_out}: {:#}",
        report["warnings"]
    );
}

/// Chromium's binary, or `None` when it is absent and the test may skip:
/// in CI (`CI` set) it must be there, since `tests/run` installs it.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
            "chromium is not installed, and CI is set: tests/run installs it (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED: chromium not found on PATH (apt-get install -y --no-install-recommends chromium); the HTML layout was not checked"
        );
    }
    found
}

/// Runs headless Chromium with `args` (the page last), and returns its
/// standard output; fails the test after a minute.
fn run_chromium(chromium: &Path, profile: &Path, args: &[&str]) -> String {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(status.success(), "chromium {args:?}: {status}\n{stderr}");
    reader.join().unwrap().unwrap()
}

/// Measures, once the page is laid out, every SVG text against its SVG's
/// box and against the other texts of that SVG, and the page against the
/// window; writes what it found into `<pre id="layout-check">`.
const LAYOUT_CHECK: &str = r#"<script>
(() => {
  const problems = [];
  let measured = 0;
  const outside = (r, box) =>
    r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5;
  const overlap = (a, b) =>
    Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  for (const svg of document.querySelectorAll('svg')) {
    const box = svg.getBoundingClientRect();
    const texts = Array.from(svg.querySelectorAll('text'));
    const boxes = texts.map((t) => t.getBoundingClientRect());
    texts.forEach((t, i) => {
      measured += 1;
      const r = boxes[i];
      if (r.width === 0) problems.push({ text: t.textContent, problem: 'not laid out' });
      if (outside(r, box)) {
        problems.push({ text: t.textContent, problem: 'outside its svg',
          text_box: [r.left, r.top, r.right, r.bottom], svg_box: [box.left, box.top, box.right, box.bottom] });
      }
      for (let j = 0; j < i; j++) {
        if (overlap(r, boxes[j])) problems.push({ text: t.textContent, problem: 'overlaps ' + texts[j].textContent });
      }
    });
  }
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth) {
    problems.push({ problem: 'page wider than the window', scroll_width: page.scrollWidth, window: window.innerWidth });
  }
  const out = document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = JSON.stringify({ measured, problems });
  document.body.appendChild(out);
})();
</script>"#;

/// The `<svg>` … `</svg>` of the section headed `heading`.
fn chart<'a>(page: &'a str, heading: &str) -> &'a str {
    let start = page.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    let rest = &page[start..];
    &rest[rest.find("<svg").unwrap()..rest.find("</svg>").unwrap()]
}

/// The contents of every `<text …>…</text>` in `svg`.
fn labels(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(&t[t.find('>')? + 1..t.find("</text>")?]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_lays_out_in_chromium_without_text_overflowing() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Kept after the run, for a person to look at.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analyze-report");
    std::fs::create_dir_all(&shots).unwrap();

    let long_names = dir.path().join("long-names");
    log(
        7,
        "2026-11-20",
        vec![
            variant("control", 0.3, 0.4),
            variant(
                "summer_campaign_prompt_rewrite_with_longer_system_instructions_v2",
                0.45,
                0.35,
            ),
            variant(
                "a-much-friendlier-tone-with-examples-and-a-closing-question",
                0.3,
                0.5,
            ),
        ],
        3_000,
    )
    .write(&long_names)
    .unwrap();
    let one_day = dir.path().join("one-day");
    log(
        8,
        "2026-11-20",
        vec![
            variant("control", 0.3, 300.0),
            variant("treatment", 0.36, 280.0),
        ],
        2_000,
    )
    .write(&one_day)
    .unwrap();
    let several_days = dir.path().join("several-days");
    let days = [
        "2026-11-18",
        "2026-11-19",
        "2026-11-20",
        "2026-11-21",
        "2026-11-22",
    ];
    for (seed, day) in days.iter().enumerate() {
        let mut broken = variant("treatment", 0.3, 1_800.0);
        broken.lost_share = 0.1;
        log(
            20 + seed as u64,
            day,
            vec![variant("control", 0.3, 2_000.0), broken],
            800,
        )
        .write(&several_days)
        .unwrap();
    }

    // A mismatch: its banner and every verdict marked suspect.
    let mismatch = dir.path().join("mismatch");
    skewed(&mismatch);

    // Slices by a tag with long values: the slice table.
    let sliced = dir.path().join("sliced");
    let doc_types = ["invoice", "purchase-order-with-a-rather-long-name", "memo"];
    for (seed, doc_type) in doc_types.iter().enumerate() {
        log(
            30 + seed as u64,
            days[seed],
            vec![
                variant("control", 0.3, 300.0),
                variant("treatment", 0.3 + 0.05 * seed as f64, 280.0),
            ],
            600,
        )
        .write_tagged(&sliced, &serde_json::json!({ "doc_type": doc_type }))
        .unwrap();
    }

    for (name, root, day_count, by) in [
        ("long-names", &long_names, 1, None),
        ("one-day", &one_day, 1, None),
        ("several-days", &several_days, days.len(), None),
        ("mismatch", &mismatch, 1, None),
        ("sliced", &sliced, doc_types.len(), Some("tag:doc_type")),
    ] {
        let report = report_by(root, by).await;
        let page = analyze::html::page(&report);
        let html = dir.path().join(format!("{name}.html"));
        std::fs::write(&html, &page).unwrap();
        let url = format!("file://{}", html.display());
        let profile = dir.path().join(format!("{name}-profile"));

        let png = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        run_chromium(
            &chromium,
            &profile,
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1100,2600",
                &url,
            ],
        );
        let shot = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(shot > 10_000, "{name}: no screenshot at {}", png.display());
        eprintln!("{name}: screenshot at {}", png.display());

        let checked = dir.path().join(format!("{name}-checked.html"));
        std::fs::write(
            &checked,
            page.replace("</body>", &format!("{LAYOUT_CHECK}</body>")),
        )
        .unwrap();
        let dom = run_chromium(
            &chromium,
            &profile,
            &[
                "--window-size=1100,2600",
                "--dump-dom",
                &format!("file://{}", checked.display()),
            ],
        );
        let start = dom
            .find(r#"<pre id="layout-check">"#)
            .unwrap_or_else(|| panic!("{name}: the layout check did not run: {dom}"))
            + r#"<pre id="layout-check">"#.len();
        let found = dom[start..start + dom[start..].find("</pre>").unwrap()]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let found: Value = serde_json::from_str(&found).unwrap();
        assert!(found["measured"].as_u64().unwrap() >= 10, "{name}: {found}");
        assert_eq!(
            found["problems"],
            serde_json::json!([]),
            "{name}: {found:#}"
        );

        // One point per variant and day, so one day of data is not blank.
        let share = chart(&page, "Share of requests per day");
        assert_eq!(
            share.matches("<circle").count(),
            report.variants.len() * day_count,
            "{name}"
        );
        // The latency axis has distinct round ticks (sub-millisecond ones
        // too) and a y axis of shares.
        let latency = labels(chart(&page, "Latency distribution"));
        let ticks: Vec<f64> = latency.iter().filter_map(|t| t.parse().ok()).collect();
        assert!(ticks.len() >= 3, "{name}: {latency:?}");
        assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{name}: {latency:?}");
        assert!(
            latency.iter().filter(|t| t.ends_with('%')).count() >= 2,
            "{name}: {latency:?}"
        );
        // The forest plot's estimates are the verdicts' own words and p-values.
        let estimates: Vec<&str> = page
            .split(r#"<td class="estimate "#)
            .skip(1)
            .map(|cell| &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()])
            .collect();
        assert_eq!(estimates.len(), report.comparisons.len(), "{name}");
        // One plot per metric, in the order the metrics first appear.
        let mut by_metric: Vec<&analyze::report::Comparison> = Vec::new();
        for c in &report.comparisons {
            if !by_metric.iter().any(|seen| seen.metric == c.metric) {
                by_metric.extend(report.comparisons.iter().filter(|o| o.metric == c.metric));
            }
        }
        for (estimate, c) in estimates.iter().zip(by_metric) {
            let estimate = estimate.replace("&lt;", "<");
            assert!(
                c.verdict.ends_with(&estimate) || c.verdict.contains(&format!("({estimate})")),
                "{estimate} / {}",
                c.verdict
            );
        }
        assert!(!page.contains("p_adj=0.0000"), "{name}");
        // The slice table: a row per comparison of each slice (and one for a
        // slice's too-small note), each slice named.
        if let Some(slices) = &report.slices {
            let table = &page[page
                .find(r#"<table class="slices">"#)
                .expect("a slice table")..];
            let table = &table[..table.find("</table>").unwrap()];
            let rows: usize = slices
                .slices
                .iter()
                .map(|s| s.comparisons.len() + usize::from(s.too_small.is_some()))
                .sum();
            assert_eq!(table.matches("<tr").count() - 1, rows, "{name}: {table}");
            for doc_type in doc_types {
                assert!(table.contains(doc_type), "{name}: {doc_type}");
            }
        }
    }
}
