#!/usr/bin/env bash
# Scale runs against one gateway with the experiment + local audit config
# (run.sh's experiment_audit_local case), on the simulated provider:
#
#   loadtest/scale.sh connections  # CONNS (1000) keep-alive connections held open at once
#                                  # (oha -c CONNS at a modest fixed RATE, 1000 req/s, for
#                                  # DURATION, 20 s): gateway RSS idle, peak and per connection
#   loadtest/scale.sh soak         # RATE (1000 req/s) for DURATION (600 s) as back-to-back
#                                  # WINDOW (60 s) runs after a WARMUP (10 s): RSS, latency and
#                                  # CPU per window, and the first window against the last
#   loadtest/scale.sh reload       # RATE (1000 req/s) for DURATION (30 s) while the config file
#                                  # alternates between two weightings and is reloaded every
#                                  # EVERY (1) s with POST /admin/reload
#   SMOKE=1 loadtest/scale.sh MODE # a few seconds (100 connections), for CI
#
# Each mode prints a markdown block and exits 1 if a request failed (reload:
# or a reload failed). Raw oha JSON and the gateway's files: loadtest/out/scale-MODE/.
set -euo pipefail
mode=${1:-}
case $mode in
  connections|soak|reload) ;;
  *) echo "usage: $0 connections|soak|reload" >&2; exit 2 ;;
esac
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)/out/scale-$mode}
source "$(dirname "$0")/lib.sh"
rm -f "$out"/*.json "$out"/*.tsv

smoke=${SMOKE:-0}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-32} # soak and reload
case $mode in
  connections) CONNS=${CONNS:-1000}; DURATION=${DURATION:-20}
    if [ "$smoke" = 1 ]; then CONNS=100; RATE=200; DURATION=3; fi ;;
  soak) DURATION=${DURATION:-600}; WINDOW=${WINDOW:-60}; WARMUP=${WARMUP:-10}
    if [ "$smoke" = 1 ]; then RATE=200; DURATION=6; WINDOW=2; WARMUP=1; fi ;;
  reload) DURATION=${DURATION:-30}; EVERY=${EVERY:-1}
    if [ "$smoke" = 1 ]; then RATE=200; DURATION=4; fi ;;
esac

# Each end of every connection is a file descriptor, in oha and in the gateway.
if [ "$mode" = connections ]; then
  need=$((CONNS + 512))
  soft=$(ulimit -n)
  if [ "$soft" != unlimited ] && [ "$soft" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || {
      echo "ulimit -n is $soft and cannot be raised to $need (hard limit $(ulimit -Hn))" >&2; exit 1; }
  fi
fi

require_oha
build_release
start_sim sim
provider_addr=${listen_addr[sim]}
gateway_config() { # control-weight treatment-weight
  base_config "$1" "$2"
  printf '%s\n' "$local_audit"
}
start_gateway gw "$(gateway_config 50 50)"
pid=${gateway_pid[gw]}
admin=http://${admin_addr[gw]}
url=http://${gateway_addr[gw]}/v1/chat/completions

oha_run() { # json-file seconds connections — open loop at RATE, latency-corrected
  "$OHA" --no-tui --output-format json -q "$RATE" --latency-correction -z "${2}s" -w -c "$3" \
    -m POST -H 'content-type: application/json' -H 'authorization: Bearer load' \
    -H 'x-user-id: user-1' -d "$experiment_body" "$url" > "$1"
}
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }
core_pct() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v s="$2" 'BEGIN { printf "%.0f%% of a core", 100 * t / hz / s }'; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

connections() {
  # Warm-up (pools, audit writer) before the idle reading.
  "$OHA" --no-tui -n 200 -c 4 -m POST -H 'content-type: application/json' -H 'x-user-id: user-1' \
    -d "$experiment_body" "$url" > /dev/null
  sleep 1
  local idle port sampler cpu0 cpu1 peak after held rps p50 p99 p999 failed
  idle=$(status_kb "$pid" VmRSS)
  # Connections the gateway holds, sampled while oha runs.
  port=${gateway_addr[gw]##*:}
  echo 0 > "$out/held.peak"
  (most=0
   while [ ! -e "$out/stop" ]; do
     n=$(ss -Htn state established "( sport = :$port )" | wc -l)
     if [ "$n" -gt "$most" ]; then most=$n; echo "$most" > "$out/held.peak"; fi
     sleep 0.2
   done) &
  sampler=$!
  helpers+=("$sampler")
  rm -f "$out/stop"
  cpu0=$(cpu_ticks "$pid")
  oha_run "$out/connections.json" "$DURATION" "$CONNS"
  cpu1=$(cpu_ticks "$pid")
  touch "$out/stop"
  wait "$sampler"
  peak=$(status_kb "$pid" VmHWM)
  after=$(status_kb "$pid" VmRSS)
  held=$(cat "$out/held.peak")
  read -r rps p50 p99 p999 failed < <(oha_stats "$out/connections.json")
  cat <<MD
### $CONNS concurrent keep-alive connections (gateway: experiment + local audit)

\`oha -c $CONNS -q $RATE --latency-correction -z ${DURATION}s\`

| | |
|---|---|
| connections held by the gateway (peak, \`ss\`) | $held of $CONNS |
| gateway RSS idle, after a warm-up (VmRSS) | $(mib "$idle") |
| gateway RSS peak (VmHWM) | $(mib "$peak") |
| RSS per connection, (peak − idle) / $CONNS | $(awk -v a="$peak" -v b="$idle" -v n="$CONNS" 'BEGIN { printf "%.1f KiB", (a - b) / n }') |
| gateway RSS after the run (VmRSS) | $(mib "$after") |
| gateway CPU | $(core_pct $((cpu1 - cpu0)) "$DURATION") |
| req/s | $rps |
| latency p50 / p99 / p99.9 (ms) | $p50 / $p99 / $p999 |
| failed (errors + non-2xx) | $failed |
MD
  [ "$held" -ge "$CONNS" ] || echo "(oha did not hold all $CONNS connections open at once: the per-connection figure divides by $CONNS regardless)"
  [ "$failed" = 0 ]
}

soak() {
  local windows=$((DURATION / WINDOW)) w cpu0 cpu1 rps p50 p99 p999 failed
  [ "$windows" -ge 1 ] || windows=1
  oha_run "$out/warmup.json" "$WARMUP" "$CONNECTIONS"
  printf 'window\tend_s\trps\tp50\tp99\tp999\tfailed\trss_kb\tcpu_ticks\n' > "$out/windows.tsv"
  for w in $(seq "$windows"); do
    cpu0=$(cpu_ticks "$pid")
    oha_run "$out/window-$w.json" "$WINDOW" "$CONNECTIONS"
    cpu1=$(cpu_ticks "$pid")
    read -r rps p50 p99 p999 failed < <(oha_stats "$out/window-$w.json")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" $((w * WINDOW)) "$rps" "$p50" "$p99" "$p999" "$failed" \
      "$(status_kb "$pid" VmRSS)" $((cpu1 - cpu0)) >> "$out/windows.tsv"
    echo "window $w/$windows: p99 $p99 ms, RSS $(mib "$(status_kb "$pid" VmRSS)")" >&2
  done
  echo "### Soak at $RATE req/s for $((windows * WINDOW)) s (gateway: experiment + local audit)"
  echo
  echo "$windows back-to-back oha runs of ${WINDOW} s, $CONNECTIONS connections, after a ${WARMUP} s warm-up;" \
    "RSS read at the end of each window; peak RSS (VmHWM) $(mib "$(status_kb "$pid" VmHWM)"); audit log on disk (spool + local sink) $(du -shc "$out/gw/spool" "$out/gw/audit" 2>/dev/null | tail -1 | cut -f1)."
  echo
  python3 - "$out/windows.tsv" "$(getconf CLK_TCK)" "$WINDOW" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
hz, window = int(sys.argv[2]), float(sys.argv[3])
print("| window | ends at (s) | req/s | p50 (ms) | p99 (ms) | p99.9 (ms) | failed | RSS (MiB) | gateway CPU |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['window']} | {r['end_s']} | {r['rps']} | {r['p50']} | {r['p99']} | {r['p999']} | {r['failed']} | "
          f"{int(r['rss_kb']) / 1024:.1f} | {100 * int(r['cpu_ticks']) / hz / window:.0f}% |")
first, last = rows[0], rows[-1]
rss0, rss1 = int(first["rss_kb"]) / 1024, int(last["rss_kb"]) / 1024
p99_0, p99_1 = float(first["p99"]), float(last["p99"])
failed = sum(int(r["failed"]) for r in rows)
# Drift: RSS up by more than 10 % and 2 MiB, or p99 up by more than half and 0.5 ms.
rss_drift = rss1 - rss0 > max(0.1 * rss0, 2.0)
p99_drift = p99_1 - p99_0 > max(0.5 * p99_0, 0.5)
problems = [name for name, bad in (("RSS grows", rss_drift), ("p99 grows", p99_drift), (f"{failed} failed", failed)) if bad]
print(f"\nVerdict, window {first['window']} → {last['window']}: RSS {rss0:.1f} → {rss1:.1f} MiB ({rss1 - rss0:+.1f} MiB), "
      f"p99 {p99_0:.3f} → {p99_1:.3f} ms ({p99_1 - p99_0:+.3f} ms), {failed} failed: "
      + ("stable" if not problems else "DRIFT (" + ", ".join(problems) + ")")
      + " (drift = RSS up > max(10 %, 2 MiB) or p99 up > max(50 %, 0.5 ms))")
if len(rows) < 3:
    print("(fewer than 3 windows: too short to say anything about drift)")
sys.exit(1 if failed else 0)
PY
}

reload() {
  local dir="$out/gw" end i=0 reloaded=0 unchanged=0 rejected=0 applied=0 status weight
  local -a w
  oha_run "$out/reload.json" "$DURATION" "$CONNECTIONS" &
  local load=$!
  helpers+=("$load")
  sleep 0.5
  end=$(( $(now_ms) + DURATION * 1000 - 1000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    i=$((i + 1))
    if ((i % 2)); then w=(80 20); else w=(50 50); fi
    # Written whole and renamed, so neither the reload nor the file poller reads half a file.
    gateway_config "${w[@]}" > "$dir/gateway.toml.next"
    mv -f "$dir/gateway.toml.next" "$dir/gateway.toml"
    status=$(curl -s -X POST "$admin/admin/reload" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status"))' || echo error)
    case $status in
      reloaded) reloaded=$((reloaded + 1)) ;;
      unchanged) unchanged=$((unchanged + 1)) ;; # the file poller got there first
      *) rejected=$((rejected + 1)) ;;
    esac
    weight=$(curl -s "$admin/admin/experiments/bench" | python3 -c 'import json,sys
print("%g" % next(v["weight"] for v in json.load(sys.stdin)["variants"] if v["name"] == "control"))' || echo none)
    [ "$weight" = "${w[0]}" ] && applied=$((applied + 1))
    sleep "$EVERY"
  done
  wait "$load"
  local ok failed_reloads rps p50 p99 p999 failed
  read -r ok failed_reloads < <(curl -s "$admin/admin/config" | python3 -c 'import json,sys
c = json.load(sys.stdin); print(c["reloads_ok"], c["reloads_failed"])')
  read -r rps p50 p99 p999 failed < <(oha_stats "$out/reload.json")
  local verdict=PASS
  if [ "$failed" != 0 ] || [ "$failed_reloads" != 0 ] || [ "$rejected" != 0 ] || [ "$ok" != "$i" ] || [ "$applied" != "$i" ]; then
    verdict=FAIL
  fi
  cat <<MD
### Reload under load (gateway: experiment + local audit)

$RATE req/s for ${DURATION} s; the config file alternated between variant weights 50/50 and 80/20, reloaded every ${EVERY} s with \`POST /admin/reload\`

| | |
|---|---|
| config changes written | $i |
| reload answers: reloaded / unchanged (the file poller was first) / failed | $reloaded / $unchanged / $rejected |
| new weights in force right after (\`/admin/experiments/bench\`) | $applied of $i |
| reloads_ok / reloads_failed (\`/admin/config\`) | $ok / $failed_reloads |
| req/s | $rps |
| latency p50 / p99 / p99.9 (ms) | $p50 / $p99 / $p999 |
| failed requests (errors + non-2xx) | $failed |

Verdict: $verdict (every change reloaded and in force, no reload failed, no request failed)
MD
  [ "$verdict" = PASS ]
}

"$mode"
