"""Summarises loadtest/run.sh's files: the load generator's JSON per case and
round (oha's at a fixed rate, wrk's via loadtest/post.lua in closed loop), the
CPU readings (cpu-CASE-ROUND.txt: proxy and upstream ticks over the run), the
stream probe's JSON (gaps-CASE-ROUND.json) and the headroom check
(headroom-direct/bare.json). Prints whether the baseline was the ceiling, one
markdown table, the stream and shadow comparisons, time to first byte and
inter-chunk gaps of paced streams, and where issue 14's targets stand.

Everything is computed per round (the runs of a round are adjacent in time),
then reported as the median and range over rounds:
- added latency = case percentile - baseline percentile (the first case, normally direct);
- throughput ratios = case req/s / direct's and / the bare forwarder's. A stream
  case is divided by the stream baseline (direct_stream, bare_stream) when it ran;
- CPU µs per request = the process's utime + stime over the run / responses
  served (per stream for stream cases, and per SSE event of the upstream's).

Arguments: out-dir rounds rate|max duration clk-tck "name=peak-rss-kb …" case…;
environment: UPSTREAM (instant|sim), STREAM_EVENTS (SSE events per instant
stream, 0 if unknown), GAP_CHUNK_MS.
"""
import json
import os
import statistics
import sys
from pathlib import Path

out, rounds, rate, duration = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
clk_tck = int(sys.argv[5])
rss_kb = {k: int(v) for k, v in (kv.split("=") for kv in sys.argv[6].split())}
cases = sys.argv[7:]  # the first is the baseline
closed_loop = rate == "max"
upstream = os.environ.get("UPSTREAM", "instant")
stream_events = int(os.environ.get("STREAM_EVENTS") or 0)
nan = float("nan")

# Issue 14's targets, phrased against the bare forwarder in the same run.
MIN_DIRECT_OVER_BARE = 2.0  # below it, the upstream or the load generator is the ceiling
CPU_PER_REQUEST_VS_BARE = {"passthrough": 1.15, "experiment": 1.25, "experiment_audit_local": 1.5}
CPU_TARGET_RATE = "5000"  # the rate the CPU and latency targets are stated at
MIN_THROUGHPUT_VS_BARE = 0.8  # experiment_audit_local, closed loop
ADDED_P999_BUDGET_MS = 0.5  # experiment_audit_local's p99.9 over bare's, fixed rate
ADDED_P99_BUDGET_MS = 0.25  # experiment_audit_local's p99 over bare's, fixed rate
STREAM_ADDED_TTFB_MS = 0.5  # passthrough_stream over direct_stream, p50
STREAM_CPU_PER_CHUNK_VS_BARE = 1.25  # passthrough_stream's proxy CPU per chunk over bare_stream's
RSS_LIMIT_MIB = 64  # at 1,000 connections: loadtest/scale.sh connections
# "No added gap between chunks": passthrough_stream's gap p99 over direct_stream's
# may not exceed what the bare forwarder adds plus the baseline's own noise
# (the range of direct_stream's gap p99 over rounds). See loadtest/README.md.


def load_generator(path):
    """One run's figures from oha's JSON or post.lua's (wrk): latencies in ms."""
    data = json.loads(path.read_text())
    if data.get("tool") == "wrk":
        failed = sum(data["errors"].values())
        return {
            "rps": data["requests"] / data["duration_s"],
            "responses": data["requests"],
            "p50": data["p50"], "p99": data["p99"], "p99.9": data["p99.9"],
            "failed": failed, "ttfb50": nan, "ttfb99": nan,
        }
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    total = sum(codes.values())
    errors = sum(data.get("errorDistribution", {}).values())
    first_byte = data.get("firstBytePercentiles") or {}
    ms = lambda x: x * 1e3 if x is not None else nan
    return {
        "rps": data["summary"]["requestsPerSec"],
        "responses": total,
        "p50": ms(pct["p50"]), "p99": ms(pct["p99"]), "p99.9": ms(pct["p99.9"]),
        "failed": total - ok + errors,
        "ttfb50": ms(first_byte.get("p50")), "ttfb99": ms(first_byte.get("p99")),
    }


def cpu_reading(name, r):
    """(proxy ticks or None, upstream ticks) over one run, or (None, None)."""
    path = out / f"cpu-{name}-{r}.txt"
    if not path.exists():
        return None, None
    proxy, upstream_ticks = path.read_text().split()
    return (None if proxy == "-" else int(proxy)), int(upstream_ticks)


def micros_per(ticks, count):
    if ticks is None or not count:
        return nan
    return ticks * 1e6 / clk_tck / count


def load(case, r):
    run = load_generator(out / f"{case}-{r}.json")
    proxy, upstream_ticks = cpu_reading(case, r)
    run["proxy_ticks"] = proxy
    run["proxy_us"] = micros_per(proxy, run["responses"])
    run["upstream_us"] = micros_per(upstream_ticks, run["responses"])
    # An instant stream is STREAM_EVENTS SSE events: the proxy's work per chunk.
    run["proxy_us_chunk"] = run["proxy_us"] / stream_events \
        if case.endswith("_stream") and stream_events else nan
    return run


runs = {case: [load(case, r) for r in range(1, rounds + 1)] for case in cases}
baseline = cases[0]


def load_gaps(case, r):
    """One stream probe run (examples/stream_probe.rs), or None when it did not run."""
    path = out / f"gaps-{case}-{r}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    pick = lambda block, key: data[block][key] if data.get(block) else nan
    proxy, _ = cpu_reading(f"gaps_{case}", r)
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
        "proxy_us": micros_per(proxy, data["count"]),
    }


gap_runs = {}
for case in cases:
    loaded = [load_gaps(case, r) for r in range(1, rounds + 1)]
    if case.endswith("_stream") and all(loaded):
        gap_runs[case] = loaded


def med_range(values, digits=3):
    values = list(values)
    if any(v != v for v in values):  # NaN: not measured in some round
        return "–"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def diff(case, other, key):
    """Per round: case's figure minus other's."""
    return [a[key] - b[key] for a, b in zip(runs[case], runs[other])]


def ratio(case, other, key):
    """Per round: case's figure over other's."""
    return [a[key] / b[key] if b[key] else nan for a, b in zip(runs[case], runs[other])]


def ratio_cell(case, base):
    other = f"{base}_stream" if case.endswith("_stream") and f"{base}_stream" in runs else base
    if other not in runs or other == case:
        return "–"
    return med_range(ratio(case, other, "rps"), 2)


def cores_cell(rs):
    ticks = [r["proxy_ticks"] for r in rs]
    if None in ticks:
        return "–"
    return f"{sum(ticks) / clk_tck / (rounds * duration):.2f}"


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


def headroom():
    """(direct req/s, bare req/s, where they come from), or None without both."""
    files = [out / "headroom-direct.json", out / "headroom-bare.json"]
    if all(path.exists() for path in files):
        direct, bare = (load_generator(path)["rps"] for path in files)
        return direct, bare, "the headroom check (wrk, closed loop, before the rounds)"
    if closed_loop and "direct" in runs and "bare" in runs:
        median = lambda case: statistics.median(r["rps"] for r in runs[case])
        return median("direct"), median("bare"), "this run's closed-loop rounds (median)"
    return None


upstream_name = {"instant": "examples/instant_upstream", "sim": "promptgate-sim (one thread)"}[upstream]
mode = "Closed loop (wrk, max throughput)" if closed_loop else f"Fixed rate {rate} req/s (oha, open loop)"
print(f"{mode} against {upstream_name}, {duration:g} s per run, {rounds} interleaved rounds "
      f"(median and range over rounds; latencies in ms; 'added' = case minus {baseline} in the same round; "
      f"'× direct' / '× bare' = throughput over direct's / the bare forwarder's in the same round, "
      f"stream cases over the stream baseline; CPU in µs of utime + stime per response served, "
      f"per stream for stream cases; 'proxy cores' = the proxy's CPU over the run)\n")

measured = headroom()
if measured is None:
    judged = False
    print("baseline not measured (no headroom check and no direct and bare runs) — ratios not judged\n")
else:
    direct_rps, bare_rps, source = measured
    judged = direct_rps >= MIN_DIRECT_OVER_BARE * bare_rps
    if judged:
        print(f"baseline uncapped: direct {direct_rps:.0f} req/s ≥ {MIN_DIRECT_OVER_BARE:g} × bare "
              f"{bare_rps:.0f} req/s ({direct_rps / bare_rps:.2f} ×, from {source})\n")
    else:
        print(f"baseline capped: direct {direct_rps:.0f} req/s < {MIN_DIRECT_OVER_BARE:g} × bare "
              f"{bare_rps:.0f} req/s — ratios not judged (from {source})\n")

print("| case | req/s | × direct | × bare | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 "
      "| proxy CPU µs/req | proxy CPU µs/chunk | upstream CPU µs/req | proxy cores | failed |")
print("|" + "---|" * 15)
for case, rs in runs.items():
    latency = [med_range(r[p] for r in rs) for p in ("p50", "p99", "p99.9")]
    added = ["–"] * 3 if case == baseline else [med_range(diff(case, baseline, p)) for p in ("p50", "p99", "p99.9")]
    cpu = [med_range((r[k] for r in rs), 1) for k in ("proxy_us", "proxy_us_chunk", "upstream_us")]
    cells = [case, f"{statistics.median(r['rps'] for r in rs):.0f}", ratio_cell(case, "direct"),
             ratio_cell(case, "bare"), *latency, *added, *cpu, cores_cell(rs), str(sum(r["failed"] for r in rs))]
    print("| " + " | ".join(cells) + " |")
if stream_events:
    print(f"\nA stream is {stream_events} SSE events (the instant upstream's chat stream): "
          "µs/chunk = µs per stream / that.")

if "direct_stream" in runs and not closed_loop:
    parts = [f"direct_stream p50 {med_range(r['ttfb50'] for r in runs['direct_stream'])}"]
    for case in ("bare_stream", "passthrough_stream"):
        if case in runs:
            parts.append(f"{case} p50 {med_range(r['ttfb50'] for r in runs[case])}, "
                         f"added p50 {med_range(diff(case, 'direct_stream', 'ttfb50'))}, "
                         f"added p99 {med_range(diff(case, 'direct_stream', 'ttfb99'))}")
    print("\nStreams, time to first byte (ms): " + "; ".join(parts))

if gap_runs:
    chunk_ms = os.environ.get("GAP_CHUNK_MS", "?")
    print(f"\nStreams: time to first byte and inter-chunk gaps (examples/stream_probe: open loop at "
          f"{rate} streams/s to promptgate-sim spacing its SSE frames {chunk_ms} ms apart, through a bare "
          f"forwarder and a gateway of its own; times from each stream's scheduled start; median and range "
          f"over rounds, ms; 'added' = case minus direct_stream in the same round; 'vs bare' = case minus "
          f"bare_stream)\n")
    print("| case | streams/s | TTFB p50 | TTFB p99 | gap p50 | gap p99 | gap p99.9 | gap max "
          "| events / response | frames / response | added TTFB p50 | added gap p50 | added gap p99 "
          "| added gap p99.9 | gap p99 vs bare | proxy CPU µs/stream | failed | probe lag p99 |")
    print("|" + "---|" * 18)
    for case, rs in gap_runs.items():
        col = lambda key: med_range(r[key] for r in rs)
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
                 med_range((r["proxy_us"] for r in rs), 1), str(sum(r["failures"] for r in rs)), col("lag99")]
        print("| " + " | ".join(cells) + " |")
    print("\nCoalesced events, of all gaps (in one body frame with the event before / within 0.1 ms of it): "
          + "; ".join(f"{case} {sum(r['same_frame'] for r in rs)} / {sum(r['bunched'] for r in rs)} "
                      f"of {sum(r['gaps'] for r in rs)}" for case, rs in gap_runs.items()))

if "shadow_0pct" in runs and "shadow_100pct" in runs:
    shadow_diff = {p: diff("shadow_100pct", "shadow_0pct", p) for p in ("p50", "p99", "p99.9")}
    print(f"\nShadow at 100% minus shadow at 0% (served latency, same round, ms): "
          f"p50 {med_range(shadow_diff['p50'])}, p99 {med_range(shadow_diff['p99'])}, "
          f"p99.9 {med_range(shadow_diff['p99.9'])}; throughput ratio "
          f"{med_range(ratio('shadow_100pct', 'shadow_0pct', 'rps'))}; gateway CPU µs/req "
          f"{med_range((r['proxy_us'] for r in runs['shadow_0pct']), 1)} → "
          f"{med_range((r['proxy_us'] for r in runs['shadow_100pct']), 1)}")

print("\nPeak RSS per process: " + ", ".join(f"{k} {v / 1024:.1f} MiB" for k, v in sorted(rss_kb.items())))


# Where the targets stand, judged on the median over rounds.
def verdict(ok, needs_closed_loop=False):
    if not judged:
        return "not judged (baseline capped)"
    if needs_closed_loop != closed_loop:
        return ("not judged at a fixed rate: run with MAX=1" if needs_closed_loop
                else f"not judged in closed loop (queueing): run at a fixed rate, RATE={CPU_TARGET_RATE}")
    if ok is None:
        return "not measured"
    return "met" if ok else "**missed**"


def target(text, values, limit, digits=3, needs_closed_loop=False, unit=""):
    """One target line: the figure per round, its bound, and the verdict on the median."""
    values = list(values)
    median = statistics.median(values)
    ok = None if median != median else (median >= limit if needs_closed_loop else median <= limit)
    bound = "≥" if needs_closed_loop else "≤"
    print(f"- {text}: {med_range(values, digits)}{unit}, target {bound} {limit:g}{unit}: "
          + verdict(ok, needs_closed_loop))


rate_note = "" if closed_loop or rate == CPU_TARGET_RATE else f" (at {rate} req/s; stated at {CPU_TARGET_RATE})"
print("\nTargets (issue 14; judged on the median over rounds):\n")
if "bare" in runs:
    for case, limit in CPU_PER_REQUEST_VS_BARE.items():
        if case in runs:
            target(f"CPU per request, {case} / bare{rate_note}", ratio(case, "bare", "proxy_us"), limit, 2, unit=" ×")
    if "experiment_audit_local" in runs:
        target("max throughput, experiment_audit_local / bare", ratio("experiment_audit_local", "bare", "rps"),
               MIN_THROUGHPUT_VS_BARE, 2, needs_closed_loop=True, unit=" ×")
        target(f"p99.9, experiment_audit_local minus bare{rate_note}",
               diff("experiment_audit_local", "bare", "p99.9"), ADDED_P999_BUDGET_MS, unit=" ms")
        target(f"p99, experiment_audit_local minus bare{rate_note}",
               diff("experiment_audit_local", "bare", "p99"), ADDED_P99_BUDGET_MS, unit=" ms")
else:
    print("- CPU, throughput and latency vs bare: not measured (needs the case bare)")
if "passthrough_stream" in runs and "direct_stream" in runs:
    target("stream added TTFB p50, passthrough_stream minus direct_stream",
           diff("passthrough_stream", "direct_stream", "ttfb50"), STREAM_ADDED_TTFB_MS, unit=" ms")
else:
    print("- stream added TTFB: not measured (needs the cases direct_stream and passthrough_stream)")
if "passthrough_stream" in runs and "bare_stream" in runs and stream_events:
    target("CPU per streamed chunk, passthrough_stream / bare_stream",
           ratio("passthrough_stream", "bare_stream", "proxy_us_chunk"), STREAM_CPU_PER_CHUNK_VS_BARE, 2, unit=" ×")
else:
    print("- CPU per streamed chunk: not measured (needs bare_stream and passthrough_stream on the instant upstream)")
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
gateways = {k: v for k, v in rss_kb.items() if k not in ("upstream", "bare", "bare_paced")}
if gateways:
    name, peak = max(gateways.items(), key=lambda kv: kv[1])
    print(f"- RSS < {RSS_LIMIT_MIB} MiB at 1,000 connections: judged by `loadtest/scale.sh connections`; "
          f"the largest gateway here peaked at {peak / 1024:.1f} MiB ({name}, {os.environ.get('CONNECTIONS', 32)} "
          f"connections)")
