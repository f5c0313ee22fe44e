#!/usr/bin/env bash
# Where a proxy's CPU goes at a fixed rate: `perf record` of the bare
# forwarder and of the gateway, case by case, under the same open-loop load
# as run.sh's fixed-rate runs (oha, instant upstream), then a flamegraph and
# the top frames of each.
#
#   loadtest/profile.sh                          # bare passthrough experiment experiment_audit_local, 5000 req/s, 10 s
#   CASES="bare passthrough" RATE=5000 DURATION=10 loadtest/profile.sh
#
# Needs perf (linux-perf) and, for the SVGs, inferno (`cargo install inferno`;
# without it the folded stacks and the top-frames table are still written).
# Writes loadtest/out/profile-CASE.{perf.data,folded,svg} and prints, per
# case, the CPU µs per request (utime + stime over the run, as run.sh reads
# it) and the shares of the process's samples by thread and by frame.
# perf's own sampling costs CPU too: compare µs per request with run.sh's, not
# with each other's absolute values from other runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-5000}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
FREQUENCY=${FREQUENCY:-499}
CASES=${CASES:-"bare passthrough experiment experiment_audit_local"}

command -v perf > /dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 1; }
require_oha
build_release --example bare_forwarder --example instant_upstream

start_listener upstream "$bin/examples/instant_upstream" --listen 127.0.0.1:0 --threads 2
provider_addr=${listen_addr[upstream]}

for case in $CASES; do
  request=$body
  case $case in
    bare)
      start_listener bare "$bin/examples/bare_forwarder" --listen 127.0.0.1:0 \
        --upstream "http://$provider_addr" --threads 2
      pid=${listen_pid[bare]} addr=${listen_addr[bare]} ;;
    passthrough | experiment)
      start_gateway "profile_$case" "$(base_config)"
      pid=${gateway_pid[profile_$case]} addr=${gateway_addr[profile_$case]} ;;
    experiment_audit_local)
      start_gateway "profile_$case" "$(base_config)
$local_audit"
      pid=${gateway_pid[profile_$case]} addr=${gateway_addr[profile_$case]} ;;
    *) echo "unknown case $case (bare passthrough experiment experiment_audit_local)" >&2; exit 2 ;;
  esac
  if [ "$case" != bare ] && [ "$case" != passthrough ]; then request=$experiment_body; fi
  data="$out/profile-$case.perf.data"
  # A warm-up, so the connection pools and the audit files exist first.
  "$OHA" --no-tui -q "$RATE" -z 2s -c "$CONNECTIONS" -m POST -H 'content-type: application/json' \
    -H 'authorization: Bearer load' -H 'x-user-id: user-1' -d "$request" \
    "http://$addr/v1/chat/completions" > /dev/null
  ticks0=$(cpu_ticks "$pid")
  perf record -q -F "$FREQUENCY" --call-graph dwarf,16384 -p "$pid" -o "$data" -- sleep "$DURATION" 2> /dev/null &
  recorder=$!
  "$OHA" --no-tui --output-format json -q "$RATE" --latency-correction -z "${DURATION}s" -w \
    -c "$CONNECTIONS" -m POST -H 'content-type: application/json' -H 'authorization: Bearer load' \
    -H 'x-user-id: user-1' -d "$request" "http://$addr/v1/chat/completions" > "$out/profile-$case.json"
  wait "$recorder"
  ticks=$(( $(cpu_ticks "$pid") - ticks0 ))
  python3 - "$case" "$out/profile-$case.json" "$ticks" "$(getconf CLK_TCK)" <<'PY'
import json, sys
case, report, ticks, hz = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
served = sum(report["statusCodeDistribution"].values())
print(f"## {case}: {served} responses, {ticks / hz / served * 1e6:.1f} CPU µs per request (perf running)")
PY
  perf script -i "$data" 2> /dev/null > "$out/profile-$case.script"
  python3 "$here/profile_report.py" "$out/profile-$case.script" "$out/profile-$case.folded"
  if command -v inferno-flamegraph > /dev/null; then
    inferno-flamegraph --minwidth 0.5 --title "promptgate loadtest: $case at $RATE req/s" \
      < "$out/profile-$case.folded" > "$out/profile-$case.svg"
    echo "flamegraph: $out/profile-$case.svg"
  fi
  rm -f "$out/profile-$case.script"
  kill -INT "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
done
