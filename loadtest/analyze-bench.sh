#!/usr/bin/env bash
# Throughput and peak memory of `promptgate analyze` over synthetic audit logs
# of growing size (gzip JSON Lines in the gateway's local-directory layout):
# records read and aggregated per second, and the peak RSS, which must not
# grow with the record count.
#
#   loadtest/analyze-bench.sh                 # 1M and 5M records
#   SIZES="100000 1000000" loadtest/analyze-bench.sh
#   SMOKE=1 loadtest/analyze-bench.sh         # 20k records, for CI
#   CASES=shadow loadtest/analyze-bench.sh    # only the shadow case (also: plain, tagged)
#
# Units are distinct (one request each, the worst case for the distinct-unit
# sets); the logs go to $WORK (default: a temporary directory, removed after).
# Three cases: the plain log, a five-day tagged log (analyze --by, drift) and
# a log with bodies and shadow records (analyze's shadow pairs, judge).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
SIZES=${SIZES:-"1000000 5000000"}
if [ "${SMOKE:-0}" = 1 ]; then SIZES=20000; fi
CASES=${CASES:-"plain tagged shadow"}
case_on() { [[ " $CASES " == *" $1 "* ]]; }
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
trap '[ -z "${WORK:-}" ] && rm -rf "$work"' EXIT

echo "building release binaries..." >&2
(cd "$root" && cargo build --release --quiet --bin promptgate --example synthetic_audit_log)
bin="${CARGO_TARGET_DIR:-$root/target}/release"

# Peak RSS of a command, sampled from /proc every 20 ms (VmHWM at exit is
# gone with the process, so keep the highest seen while it runs).
run_measured() { # out-file command...
  local out=$1; shift
  "$@" > "$out" &
  local pid=$! peak=0 rss
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss
    sleep 0.02
  done
  wait "$pid"
  echo "$peak"
}

if case_on plain; then
echo "| records | objects | log size (gzip) | analyze wall time | records/s | peak RSS |"
echo "|---|---|---|---|---|---|"
for n in $SIZES; do
  dir="$work/log-$n"
  if [ ! -d "$dir" ]; then "$bin/examples/synthetic_audit_log" "$dir" "$n" >&2; fi
  objects=$(find "$dir/v1" -name '*.jsonl.gz' | wc -l)
  size=$(du -sh "$dir" | cut -f1)
  start=$(date +%s.%N)
  peak=$(run_measured "$work/report-$n.json" "$bin/promptgate" analyze --source "$dir" --experiment exp --format json)
  end=$(date +%s.%N)
  python3 - "$n" "$objects" "$size" "$start" "$end" "$peak" "$work/report-$n.json" <<'PY'
import json, sys
n, objects, size, start, end, peak, report = sys.argv[1:]
wall = float(end) - float(start)
records = json.load(open(report))["read"]["request_records"]
assert records == int(n), (records, n)
print(f"| {int(n):,} | {objects} | {size} | {wall:.1f} s | {int(n) / wall:,.0f} | {int(peak) / 1024:.1f} MiB |")
PY
done
fi

# The same sizes as a five-day log tagged `doc_type` by day, the days after
# the first 30 % slower (`synthetic_audit_log DIR UNITS 1 5`): analyze by tag
# (a collector per slice) and drift (the last two days against the two
# before), with their peak RSS.
if case_on tagged; then
echo
echo "| records | analyze --by tag:doc_type | peak RSS | drift --last-days 2 | peak RSS |"
echo "|---|---|---|---|---|"
for n in $SIZES; do
  dir="$work/tagged-$n"
  if [ ! -d "$dir" ]; then "$bin/examples/synthetic_audit_log" "$dir" $((n / 5)) 1 5 >&2; fi
  start=$(date +%s.%N)
  by_peak=$(run_measured "$work/by-$n.json" "$bin/promptgate" analyze --source "$dir" --experiment exp --by tag:doc_type --format json)
  middle=$(date +%s.%N)
  set +e
  drift_peak=$(run_measured "$work/drift-$n.json" "$bin/promptgate" drift --source "$dir" --experiment exp --last-days 2 --until 2026-11-24 --format json)
  set -e
  end=$(date +%s.%N)
  python3 - "$n" "$start" "$middle" "$end" "$by_peak" "$drift_peak" "$work/by-$n.json" "$work/drift-$n.json" <<'PY'
import json, sys
n, start, middle, end, by_peak, drift_peak, by, drift = sys.argv[1:]
report = json.load(open(by))
assert report["read"]["request_records"] == int(n), report["read"]
assert len(report["slices"]["slices"]) == 4, report["slices"]
drifted = [s["name"] for s in json.load(open(drift))["signals"] if s["verdict"] == "drift"]
print(f"| {int(n):,} | {float(middle) - float(start):.1f} s | {int(by_peak) / 1024:.1f} MiB "
      f"| {float(end) - float(middle):.1f} s (drift: {', '.join(drifted) or 'none'}) | {int(drift_peak) / 1024:.1f} MiB |")
PY
done
fi

# The shadow case: the same numbers of served requests with logged bodies,
# half of them with a shadow record of the other variant beside them
# (`synthetic_audit_log --shadows 0.5 DIR N`). `analyze` pairs every shadow
# with its served request (agreement, paired differences on a sample of at
# most 20,000 pairs per variant pair); `judge --dry-run` reads the whole log
# pairwise (shadows, then their served requests) and asks no model, keeping
# at most --max-pairs items (the quickstart's demo judge and its rubric, in a
# config written below with experiment `exp`).
if case_on shadow; then
judge_config="$work/judge.toml"
cat > "$judge_config" <<'TOML'
# config/quickstart.toml's demo provider and judge, with the synthetic log's
# experiment (`exp`: control and treatment, each the other's shadow).
[server]
listen = "127.0.0.1:8080"
[auth]
open = true
[providers.demo]
kind = "demo"
[feedback.metrics]
"judge.helpful" = "boolean"
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.exp]
unit_key = { header = "x-user-id" }
[[experiments.exp.variants]]
name = "control"
weight = 50
model = "demo-small"
providers = ["demo"]
system = "You are a concise support assistant. Answer in one or two sentences."
[[experiments.exp.variants]]
name = "treatment"
weight = 50
model = "demo-small"
providers = ["demo"]
system = "You are a warm, friendly support assistant. Start with a cheerful greeting."
[experiments.exp.shadow]
variants = ["control", "treatment"]
sample_percent = 50
TOML
max_pairs=${JUDGE_MAX_PAIRS:-1000}
echo
echo "| served records | shadow pairs | log size (gzip) | analyze wall time | peak RSS | judge --dry-run --max-pairs $max_pairs | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for n in $SIZES; do
  dir="$work/shadow-$n"
  if [ ! -d "$dir" ]; then "$bin/examples/synthetic_audit_log" --shadows 0.5 "$dir" "$n" >&2; fi
  size=$(du -sh "$dir" | cut -f1)
  start=$(date +%s.%N)
  analyze_peak=$(run_measured "$work/shadow-analyze-$n.json" "$bin/promptgate" analyze --source "$dir" --experiment exp --format json)
  middle=$(date +%s.%N)
  judge_peak=$(run_measured "$work/shadow-judge-$n.json" "$bin/promptgate" judge --config "$judge_config" \
    --rubric "$root/config/judges/helpful.toml" --source "$dir" --experiment exp \
    --dry-run --max-pairs "$max_pairs" --format json --spool-dir "$work/judge-spool" 2>/dev/null)
  end=$(date +%s.%N)
  python3 - "$n" "$size" "$start" "$middle" "$end" "$analyze_peak" "$judge_peak" "$work/shadow-analyze-$n.json" "$work/shadow-judge-$n.json" <<'PY'
import json, sys
n, size, start, middle, end, analyze_peak, judge_peak, analyze, judge = sys.argv[1:]
report = json.load(open(analyze))
pairs = sum(s["pairs"] for s in report["shadows"])
assert report["population"]["analysed_requests"] == int(n), report["population"]
assert report["read"]["request_records"] == int(n) + pairs, report["read"]
assert report["read"]["unpaired_shadows"] == 0, report["read"]
sampled = [s["latency_ms"].get("sampled_from") for s in report["shadows"]]
verdicts = json.load(open(judge))
assert verdicts["items"] == pairs and verdicts["records_read"] == int(n) + pairs, verdicts
print(f"| {int(n):,} | {pairs:,} (tests on {'all' if None in sampled else 'a sample'}) | {size} "
      f"| {float(middle) - float(start):.1f} s | {int(analyze_peak) / 1024:.1f} MiB "
      f"| {float(end) - float(middle):.1f} s | {int(judge_peak) / 1024:.1f} MiB |")
PY
done
fi
