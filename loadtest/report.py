"""Summarises loadtest/run.sh's oha JSON files and the stream probe's
(gaps-CASE-ROUND.json): one markdown table, the stream and shadow
comparisons, time to first byte and inter-chunk gaps of paced streams, and
where the targets stand.

Everything is computed per round (the runs of a round are adjacent in time),
then reported as the median and range over rounds:
- added latency = case percentile - baseline percentile (the first case, normally direct);
- throughput ratios = case req/s / direct's and / the bare forwarder's. A stream
  case is divided by the stream baseline (direct_stream, bare_stream) when it ran.
"""
import json
import os
import statistics
import sys
from pathlib import Path

out, rounds, rate, duration = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
clk_tck = int(sys.argv[5])
cpu_ticks = {k: int(v) for k, v in (kv.split("=") for kv in sys.argv[6].split())}
rss_kb = {k: int(v) for k, v in (kv.split("=") for kv in sys.argv[7].split())}
cases = sys.argv[8:]  # the first is the baseline
closed_loop = rate == "max"

# The targets, phrased against the bare forwarder.
MIN_THROUGHPUT_VS_BARE = 0.8  # experiment_audit_local, closed loop
ADDED_P99_BUDGET_MS = 0.25  # experiment_audit_local's added p99 over bare's, fixed rate
STREAM_ADDED_TTFB_MS = 0.5  # passthrough_stream over direct_stream, p50
# "No added gap between chunks": passthrough_stream's gap p99 over direct_stream's
# may not exceed what the bare forwarder adds plus the baseline's own noise
# (the range of direct_stream's gap p99 over rounds). See loadtest/README.md.


def load(case, r):
    data = json.loads((out / f"{case}-{r}.json").read_text())
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values())
    errors = sum(data.get("errorDistribution", {}).values())
    first_byte = data.get("firstBytePercentiles") or {}
    return {
        "rps": data["summary"]["requestsPerSec"],
        "p50": pct["p50"] * 1e3,
        "p99": pct["p99"] * 1e3,
        "p99.9": pct["p99.9"] * 1e3,
        "non2xx": total - ok + errors,
        "ttfb50": first_byte["p50"] * 1e3 if "p50" in first_byte else float("nan"),
        "ttfb99": first_byte["p99"] * 1e3 if "p99" in first_byte else float("nan"),
    }


runs = {case: [load(case, r) for r in range(1, rounds + 1)] for case in cases}
baseline = cases[0]


def load_gaps(case, r):
    """One stream probe run (examples/stream_probe.rs), or None when it did not run."""
    path = out / f"gaps-{case}-{r}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    nan = float("nan")
    pick = lambda block, key: data[block][key] if data.get(block) else nan
    return {
        "count": data["count"], "failures": data["failures"], "rate": data["completed_per_s"],
        "ttfb50": pick("ttfb_ms", "p50"), "ttfb99": pick("ttfb_ms", "p99"),
        "gap50": pick("gap_ms", "p50"), "gap99": pick("gap_ms", "p99"),
        "gap999": pick("gap_ms", "p99.9"), "gapmax": pick("gap_ms", "max"),
        "events": pick("events_per_response", "mean"),
        "events_min": pick("events_per_response", "min"), "events_max": pick("events_per_response", "max"),
        "frames": pick("frames_per_response", "mean"),
        "same_frame": data["same_frame_gaps"], "bunched": data["gaps_under_0_1ms"], "gaps": data["gaps"],
        "lag99": pick("schedule_lag_ms", "p99"),
    }


gap_runs = {}
for case in cases:
    loaded = [load_gaps(case, r) for r in range(1, rounds + 1)]
    if case.endswith("_stream") and all(loaded):
        gap_runs[case] = loaded


def med_range(values, digits=3):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def diff(case, other, key):
    """Per round: case's figure minus other's."""
    return [a[key] - b[key] for a, b in zip(runs[case], runs[other])]


def rps_ratio(case, other):
    """Per round: case's throughput over other's."""
    return [a["rps"] / b["rps"] for a, b in zip(runs[case], runs[other])]


def ratio_cell(case, base):
    other = f"{base}_stream" if case.endswith("_stream") and f"{base}_stream" in runs else base
    if other not in runs or other == case:
        return "–"
    return med_range(rps_ratio(case, other), 2)


def cpu_cell(case):
    if case not in cpu_ticks:
        return "–"
    return f"{100 * cpu_ticks[case] / clk_tck / (rounds * duration):.0f}% of a core"


def gap_diff(case, other, key):
    """Per round: the probe's figure for case minus other's."""
    return [a[key] - b[key] for a, b in zip(gap_runs[case], gap_runs[other])]


def gap_allowance():
    """What passthrough_stream's added gap p99 may be and still count as no
    added gap: the bare forwarder's added gap p99 (median over rounds, at least
    0) plus the noise of the baseline itself, the range of direct_stream's gap
    p99 over rounds. Returns (allowance, bare's added p99, noise or None)."""
    bare = max(0.0, statistics.median(gap_diff("bare_stream", "direct_stream", "gap99"))) \
        if "bare_stream" in gap_runs else 0.0
    direct = [r["gap99"] for r in gap_runs["direct_stream"]]
    noise = max(direct) - min(direct) if len(direct) > 1 else None
    return bare + (noise or 0.0), bare, noise


def verdict(ok):
    return "met" if ok else "**missed**"


mode = "Closed loop (max throughput)" if closed_loop else f"Fixed rate {rate} req/s"
print(f"{mode}, {duration:g} s per run, {rounds} interleaved rounds "
      f"(median and range over rounds; latencies in ms; 'added' = case minus {baseline} in the same round; "
      f"'× direct' / '× bare' = throughput over direct's / the bare forwarder's in the same round, "
      f"stream cases over the stream baseline)\n")
print("| case | req/s | × direct | × bare | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | proxy CPU | failed |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for case, rs in runs.items():
    latency = [med_range([r[p] for r in rs]) for p in ("p50", "p99", "p99.9")]
    added = ["–"] * 3 if case == baseline else [med_range(diff(case, baseline, p)) for p in ("p50", "p99", "p99.9")]
    cells = [case, f"{statistics.median(r['rps'] for r in rs):.0f}", ratio_cell(case, "direct"),
             ratio_cell(case, "bare"), *latency, *added, cpu_cell(case), str(sum(r["non2xx"] for r in rs))]
    print("| " + " | ".join(cells) + " |")

if "direct_stream" in runs:
    parts = [f"direct_stream p50 {med_range([r['ttfb50'] for r in runs['direct_stream']])}"]
    for case in ("bare_stream", "passthrough_stream"):
        if case in runs:
            parts.append(f"{case} p50 {med_range([r['ttfb50'] for r in runs[case]])}, "
                         f"added p50 {med_range(diff(case, 'direct_stream', 'ttfb50'))}, "
                         f"added p99 {med_range(diff(case, 'direct_stream', 'ttfb99'))}")
    print("\nStreams, time to first byte (ms): " + "; ".join(parts))

if gap_runs:
    chunk_ms = os.environ.get("GAP_CHUNK_MS", "?")
    print(f"\nStreams: time to first byte and inter-chunk gaps (examples/stream_probe: open loop at "
          f"{rate} streams/s, the simulator spacing its SSE frames {chunk_ms} ms apart; times from each "
          f"stream's scheduled start; median and range over rounds, ms; 'added' = case minus "
          f"direct_stream in the same round; 'vs bare' = case minus bare_stream)\n")
    print("| case | streams/s | TTFB p50 | TTFB p99 | gap p50 | gap p99 | gap p99.9 | gap max "
          "| events / response | frames / response | added TTFB p50 | added gap p50 | added gap p99 "
          "| added gap p99.9 | gap p99 vs bare | proxy CPU | failed | probe lag p99 |")
    print("|" + "---|" * 18)
    for case, rs in gap_runs.items():
        col = lambda key: med_range([r[key] for r in rs])
        events = (f"{statistics.median(r['events'] for r in rs):.2f} "
                  f"[{min(r['events_min'] for r in rs)}–{max(r['events_max'] for r in rs)}]")
        if case == "direct_stream":
            added = ["–"] * 4
        else:
            added = [med_range(gap_diff(case, "direct_stream", k)) if "direct_stream" in gap_runs else "–"
                     for k in ("ttfb50", "gap50", "gap99", "gap999")]
        vs_bare = med_range(gap_diff(case, "bare_stream", "gap99")) \
            if "bare_stream" in gap_runs and case not in ("bare_stream", "direct_stream") else "–"
        cells = [case, f"{statistics.median(r['rate'] for r in rs):.0f}", col("ttfb50"), col("ttfb99"),
                 col("gap50"), col("gap99"), col("gap999"), col("gapmax"), events,
                 f"{statistics.median(r['frames'] for r in rs):.2f}", *added, vs_bare,
                 cpu_cell(f"gaps_{case}"), str(sum(r["failures"] for r in rs)), col("lag99")]
        print("| " + " | ".join(cells) + " |")
    print("\nCoalesced events, of all gaps (in one body frame with the event before / within 0.1 ms of it): "
          + "; ".join(f"{case} {sum(r['same_frame'] for r in rs)} / {sum(r['bunched'] for r in rs)} "
                      f"of {sum(r['gaps'] for r in rs)}" for case, rs in gap_runs.items()))

if "shadow_0pct" in runs and "shadow_100pct" in runs:
    shadow_diff = {p: diff("shadow_100pct", "shadow_0pct", p) for p in ("p50", "p99", "p99.9")}
    ratio = statistics.median(rps_ratio("shadow_100pct", "shadow_0pct"))
    print(f"\nShadow at 100% minus shadow at 0% (served latency, same round, ms): "
          f"p50 {med_range(shadow_diff['p50'])}, p99 {med_range(shadow_diff['p99'])}, "
          f"p99.9 {med_range(shadow_diff['p99.9'])}; throughput ratio {ratio:.3f}"
          + (f"; gateway CPU {cpu_cell('shadow_0pct')} → {cpu_cell('shadow_100pct')}"
             if "shadow_0pct" in cpu_ticks and "shadow_100pct" in cpu_ticks else ""))

print("\nPeak RSS per process: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in sorted(rss_kb.items())))

# Where the targets stand, judged on the median over rounds.
print("\nTargets (judged on the median over rounds):\n")
if "experiment_audit_local" in runs and "bare" in runs:
    ratios = rps_ratio("experiment_audit_local", "bare")
    print(f"- throughput, experiment_audit_local / bare: {med_range(ratios, 2)}, target ≥ {MIN_THROUGHPUT_VS_BARE}: "
          + (verdict(statistics.median(ratios) >= MIN_THROUGHPUT_VS_BARE) if closed_loop else
             "not meaningful at a fixed rate (every case serves the offered rate): run with MAX=1"))
    extra = diff("experiment_audit_local", "bare", "p99")
    print(f"- added p99, experiment_audit_local minus bare: {med_range(extra)} ms, "
          f"budget {ADDED_P99_BUDGET_MS} ms: {verdict(statistics.median(extra) <= ADDED_P99_BUDGET_MS)}"
          + (" (closed loop: this is queueing; judge it from a fixed-rate run)" if closed_loop else ""))
else:
    print("- throughput and added p99 vs bare: not measured (needs the cases bare and experiment_audit_local)")
if "passthrough_stream" in runs and "direct_stream" in runs:
    ttfb = diff("passthrough_stream", "direct_stream", "ttfb50")
    print(f"- stream added TTFB p50, passthrough_stream minus direct_stream: {med_range(ttfb)} ms, "
          f"budget {STREAM_ADDED_TTFB_MS} ms: {verdict(statistics.median(ttfb) <= STREAM_ADDED_TTFB_MS)}"
          + (" (closed loop: judge it from a fixed-rate run)" if closed_loop else ""))
else:
    print("- stream added TTFB: not measured (needs the cases direct_stream and passthrough_stream)")
if "passthrough_stream" in gap_runs and "direct_stream" in gap_runs:
    added = gap_diff("passthrough_stream", "direct_stream", "gap99")
    allowance, bare_added, noise = gap_allowance()
    basis = (f"bare_stream's added gap p99 {bare_added:.3f} ms" if "bare_stream" in gap_runs
             else "no bare_stream run (0 ms)")
    basis += (f" + noise {noise:.3f} ms (range of direct_stream's gap p99 over rounds)" if noise is not None
              else " + no noise term (one round: run ROUNDS ≥ 2 to measure it)")
    events = {case: (min(r["events_min"] for r in rs), max(r["events_max"] for r in rs))
              for case, rs in gap_runs.items()}
    lost = events["passthrough_stream"] != events["direct_stream"]
    print(f"- stream added gap p99, passthrough_stream minus direct_stream: {med_range(added)} ms, "
          f"target no added gap, allowance {allowance:.3f} ms = {basis}: "
          f"{verdict(statistics.median(added) <= allowance)}; events per response "
          f"{events['passthrough_stream'][0]}–{events['passthrough_stream'][1]} vs direct_stream's "
          f"{events['direct_stream'][0]}–{events['direct_stream'][1]}: "
          + ("**events lost or split**" if lost else "none lost"))
else:
    print("- stream added gap: not measured (needs the stream probe on direct_stream and passthrough_stream; "
          "not with MAX=1 or GAPS=0)")
