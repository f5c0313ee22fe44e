"""Summarises loadtest/run.sh's oha JSON files into one markdown table.

Added latency = gateway percentile - direct percentile, per round (the two
runs of a round are adjacent in time), then the median and range over rounds.
"""
import json
import statistics
import sys
from pathlib import Path

out, rounds, rate, duration = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
clk_tck = int(sys.argv[5])
cpu_ticks = {k: int(v) for k, v in (kv.split("=") for kv in sys.argv[6].split())}
rss_kb = {k: int(v) for k, v in (kv.split("=") for kv in sys.argv[7].split())}
cases = sys.argv[8:]  # the first is the baseline


def load(case, r):
    data = json.loads((out / f"{case}-{r}.json").read_text())
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values())
    errors = sum(data.get("errorDistribution", {}).values())
    return {
        "rps": data["summary"]["requestsPerSec"],
        "p50": pct["p50"] * 1e3,
        "p99": pct["p99"] * 1e3,
        "p99.9": pct["p99.9"] * 1e3,
        "non2xx": total - ok + errors,
        "ttfb50": data["firstBytePercentiles"]["p50"] * 1e3 if data.get("firstBytePercentiles") else float("nan"),
        "ttfb99": data["firstBytePercentiles"]["p99"] * 1e3 if data.get("firstBytePercentiles") else float("nan"),
    }


runs = {case: [load(case, r) for r in range(1, rounds + 1)] for case in cases}
baseline = cases[0]


def med_range(values):
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


print(f"Fixed rate {rate} req/s, {duration:g} s per run, {rounds} interleaved rounds "
      f"(median and range over rounds; latencies in ms; 'added' = case minus {baseline} in the same round)\n")
print("| case | req/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | gateway CPU | failed |")
print("|---|---|---|---|---|---|---|---|---|---|")
for case, rs in runs.items():
    added = {p: [r[p] - d[p] for r, d in zip(rs, runs[baseline])] for p in ("p50", "p99", "p99.9")}
    print(
        f"| {case} | {statistics.median(r['rps'] for r in rs):.0f} | {med_range([r['p50'] for r in rs])} | "
        f"{med_range([r['p99'] for r in rs])} | {med_range([r['p99.9'] for r in rs])} | "
        + (" | ".join(med_range(added[p]) for p in ("p50", "p99", "p99.9")) if case != baseline else "– | – | –")
        + (f" | {100 * cpu_ticks[case] / clk_tck / (rounds * duration):.0f}% of a core" if case in cpu_ticks else " | –")
        + f" | {sum(r['non2xx'] for r in rs)} |"
    )
if "direct_stream" in runs and "passthrough_stream" in runs:
    d, g = runs["direct_stream"], runs["passthrough_stream"]
    added50 = [x["ttfb50"] - y["ttfb50"] for x, y in zip(g, d)]
    added99 = [x["ttfb99"] - y["ttfb99"] for x, y in zip(g, d)]
    print(f"\nStreams, time to first byte (ms): direct p50 {med_range([r['ttfb50'] for r in d])}, "
          f"through the gateway p50 {med_range([r['ttfb50'] for r in g])}; "
          f"added p50 {med_range(added50)}, added p99 {med_range(added99)}")
if "shadow_0pct" in runs and "shadow_100pct" in runs:
    off, on = runs["shadow_0pct"], runs["shadow_100pct"]
    diff = {p: [x[p] - y[p] for x, y in zip(on, off)] for p in ("p50", "p99", "p99.9")}
    ratio = statistics.median(x["rps"] for x in on) / statistics.median(y["rps"] for y in off)
    print(f"\nShadow at 100% minus shadow at 0% (served latency, same round, ms): "
          f"p50 {med_range(diff['p50'])}, p99 {med_range(diff['p99'])}, p99.9 {med_range(diff['p99.9'])}; "
          f"throughput ratio {ratio:.3f}"
          + (f"; gateway CPU {100 * cpu_ticks['shadow_0pct'] / clk_tck / (rounds * duration):.0f}% → "
             f"{100 * cpu_ticks['shadow_100pct'] / clk_tck / (rounds * duration):.0f}% of a core"
             if "shadow_0pct" in cpu_ticks and "shadow_100pct" in cpu_ticks else ""))
print("\nPeak RSS per gateway process: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in sorted(rss_kb.items())))
