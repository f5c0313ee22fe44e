#!/usr/bin/env bash
# Added latency of the gateway over calling the simulated provider directly,
# at a fixed open-loop request rate (oha, latency-corrected), measured side by
# side in one run with the cases interleaved round by round:
#   direct      — straight to the simulated provider (the baseline)
#   bare        — through examples/bare_forwarder.rs, a bare hyper forwarder:
#                 the least any proxy adds here, the yardstick for the targets
#   passthrough — through the gateway, plain routing
#   experiment  — through the gateway, a 2-variant experiment (assignment +
#                 template rendering + body rewrite on every request)
#   experiment_audit_local / _s3 — plus the audit log (local dir / SeaweedFS)
#   shadow_0pct / shadow_100pct — experiment + local audit + a shadow variant
#                 on a second simulator with the same latency, sampled at 0% and 100%
#   direct_stream / bare_stream / passthrough_stream — SSE streams: oha on
#                 instant streams (throughput, latency, TTFB), then in the same
#                 round examples/stream_probe on streams paced GAP_CHUNK_MS apart
#                 (TTFB and the gap between SSE events: delays, coalescing, loss)
#
#   loadtest/run.sh                     # 1000 req/s, 10 s per run, 3 rounds
#   RATE=5000 DURATION=20 ROUNDS=5 loadtest/run.sh
#   MAX=1 DURATION=10 loadtest/run.sh   # closed loop: maximum throughput of each case
#   SMOKE=1 loadtest/run.sh             # a 1-second run of each case, for CI
#   CASES="direct shadow_0pct shadow_100pct" loadtest/run.sh   # a subset
#   SIM_FIRST_BYTE_MS=20 loadtest/run.sh  # a provider that takes 20 ms to answer
#   GAP_CHUNK_MS=5 loadtest/run.sh        # the probe's streams paced 5 ms apart (default 2)
#   GAPS=0 loadtest/run.sh                # skip the stream probe runs
#
# Prints a markdown table with throughput ratios to direct and bare, then where
# the targets stand; raw oha JSON goes to loadtest/out/. Shared helpers are in
# loadtest/lib.sh; loadtest/scale.sh has the 1,000-connection, soak and
# reload runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
if [ "${SMOKE:-0}" = 1 ]; then RATE=200; DURATION=1; ROUNDS=1; fi
GAP_CHUNK_MS=${GAP_CHUNK_MS:-2}
GAPS=${GAPS:-1}
# The probe is open loop at RATE: it has nothing to say about a closed-loop run.
if [ "${MAX:-0}" = 1 ]; then GAPS=0; fi
all_cases="direct bare passthrough experiment experiment_audit_local experiment_audit_s3 shadow_0pct shadow_100pct direct_stream bare_stream passthrough_stream"
CASES=${CASES:-$all_cases}
want() { [[ " $CASES " == *" $1 "* ]]; }
for c in $CASES; do
  [[ " $all_cases " == *" $c "* ]] || { echo "unknown case $c (cases: $all_cases)" >&2; exit 2; }
done

build_release --example bare_forwarder --example stream_probe
# Earlier runs' probe files would be read as this run's.
rm -f "$out"/gaps-*.json

# The simulated provider, on one worker thread (instant answers unless SIM_FIRST_BYTE_MS).
start_sim sim
sim_addr=${listen_addr[sim]}
# Shadow calls go to a second provider with the same latency, as a candidate
# model would: sharing one single-threaded simulator would queue the served
# call behind its own shadow, a cost no real provider pair imposes.
if want shadow_0pct || want shadow_100pct; then
  start_sim shadow-sim
  shadow_sim_addr=${listen_addr[shadow-sim]}
fi
# The bare forwarder (examples/bare_forwarder.rs): the least any proxy costs
# here. Its CPU and RSS are recorded like a gateway's.
if want bare || want bare_stream; then
  start_listener bare "$bin/examples/bare_forwarder" --listen 127.0.0.1:0 --upstream "http://$sim_addr" --threads 2
  gateway_addr[bare]=${listen_addr[bare]}
  gateway_pid[bare]=${listen_pid[bare]}
fi

shadow_config() { # sample-percent: a zero-weight candidate on its own provider, in shadow
cat <<TOML
$(base_config)
[providers.shadow_sim]
kind = "openai"
base_url = "http://$shadow_sim_addr/v1"
max_retries = 0
[[experiments.bench.variants]]
name = "candidate"
weight = 0
model = "gpt-4o-mini"
providers = ["shadow_sim"]
system = "You are a terse assistant for {{audience}}."
[experiments.bench.shadow]
variants = ["candidate"]
sample_percent = $1
max_concurrent = 4096
$local_audit
TOML
}

cases=()
for c in $CASES; do [ "$c" = experiment_audit_s3 ] || cases+=("$c"); done
if want passthrough || want experiment || want passthrough_stream; then start_gateway plain "$(base_config)"; fi
if want experiment_audit_local; then start_gateway audit_local "$(base_config)
$local_audit"; fi
if want shadow_0pct; then start_gateway shadow_0pct "$(shadow_config 0)"; fi
if want shadow_100pct; then start_gateway shadow_100pct "$(shadow_config 100)"; fi

weed="$root/.venv-test/bin/weed"
if ! want experiment_audit_s3; then :
elif [ -x "$weed" ]; then
  mkdir -p "$out/s3"
  rm -rf "$out/s3/data"
  AWS_ACCESS_KEY_ID=load AWS_SECRET_ACCESS_KEY=loadsecret "$weed" mini -dir="$out/s3/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port=28333 -master.port=28334 -volume.port=28335 -filer.port=28336 -admin.port=28337 \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false -master.telemetry=false \
    -s3.allowDeleteBucketNotEmpty=false -bucket=loadtest > "$out/s3/weed.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:28333/ && break; sleep 0.1; done
  sleep 1
  start_gateway audit_s3 "$(base_config)
[audit]
sink = \"s3\"
s3_bucket = \"loadtest\"
s3_endpoint = \"http://127.0.0.1:28333\"
s3_region = \"us-east-1\"
s3_force_path_style = true
spool_dir = \"spool\"
unit_key_secret_env = \"AWS_SECRET_ACCESS_KEY\""
  cases+=(experiment_audit_s3)
else
  echo "no SeaweedFS at $weed (tests/run installs it): skipping the S3 case" >&2
fi

# MAX=1: closed loop, as fast as the connections go (maximum throughput);
# otherwise open loop at RATE with latency correction (latency figures).
if [ "${MAX:-0}" = 1 ]; then rate_args=(); RATE=max; else rate_args=(-q "$RATE" --latency-correction); fi
run_case() { # name url round body
  "$OHA" --no-tui --output-format json "${rate_args[@]}" -z "${DURATION}s" -w \
    -c "$CONNECTIONS" -m POST -H 'content-type: application/json' -H 'authorization: Bearer load' \
    -H 'x-user-id: user-1' -d "$4" "$2" > "$out/$1-$3.json"
}

declare -A cpu
measure() { # case gateway url body round
  local before after
  before=$(cpu_ticks "${gateway_pid[$2]}")
  run_case "$1" "$3" "$5" "$4"
  after=$(cpu_ticks "${gateway_pid[$2]}")
  cpu[$1]=$(( ${cpu[$1]:-0} + after - before ))
}
url() { echo "http://${gateway_addr[$1]}/v1/chat/completions"; }
# The stream probe (examples/stream_probe.rs): the same stream request, open
# loop at RATE, the simulator asked (x-sim-chunk-ms, forwarded like any
# header) to space its SSE frames GAP_CHUNK_MS apart; JSON to gaps-CASE-ROUND.
probe_gaps() { # case url round [gateway]
  [ "$GAPS" = 1 ] || return 0
  local before after
  if [ -n "${4:-}" ]; then before=$(cpu_ticks "${gateway_pid[$4]}"); fi
  "$bin/examples/stream_probe" --url "$2" --rate "$RATE" --duration "$DURATION" --body "$stream_body" \
    --header 'authorization: Bearer load' --header 'x-user-id: user-1' \
    --header "x-sim-chunk-ms: $GAP_CHUNK_MS" > "$out/gaps-$1-$3.json"
  if [ -n "${4:-}" ]; then
    after=$(cpu_ticks "${gateway_pid[$4]}")
    cpu[gaps_$1]=$(( ${cpu[gaps_$1]:-0} + after - before ))
  fi
}
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for c in "${cases[@]}"; do
    case $c in
      direct) run_case direct "http://$sim_addr/v1/chat/completions" "$round" "$body" ;;
      bare) measure bare bare "$(url bare)" "$body" "$round" ;;
      passthrough) measure passthrough plain "$(url plain)" "$body" "$round" ;;
      experiment) measure experiment plain "$(url plain)" "$experiment_body" "$round" ;;
      experiment_audit_local) measure "$c" audit_local "$(url audit_local)" "$experiment_body" "$round" ;;
      experiment_audit_s3) measure "$c" audit_s3 "$(url audit_s3)" "$experiment_body" "$round" ;;
      shadow_0pct|shadow_100pct) measure "$c" "$c" "$(url "$c")" "$experiment_body" "$round" ;;
      direct_stream)
        run_case direct_stream "http://$sim_addr/v1/chat/completions" "$round" "$stream_body"
        probe_gaps direct_stream "http://$sim_addr/v1/chat/completions" "$round" ;;
      bare_stream)
        measure bare_stream bare "$(url bare)" "$stream_body" "$round"
        probe_gaps bare_stream "$(url bare)" "$round" bare ;;
      passthrough_stream)
        measure passthrough_stream plain "$(url plain)" "$stream_body" "$round"
        probe_gaps passthrough_stream "$(url plain)" "$round" plain ;;
      *) echo "unknown case $c (cases: $all_cases)" >&2; exit 2 ;;
    esac
  done
done
rss=""
for name in "${!gateway_pid[@]}"; do
  rss="$rss $name=$(status_kb "${gateway_pid[$name]}" VmHWM)"
done
cpu_args=""
for c in "${cases[@]}"; do
  case $c in direct*) ;; *) cpu_args="$cpu_args $c=${cpu[$c]:-0}" ;; esac
  if [ -n "${cpu[gaps_$c]:-}" ]; then cpu_args="$cpu_args gaps_$c=${cpu[gaps_$c]}"; fi
done

for name in shadow_0pct shadow_100pct; do
  if [ -n "${admin_addr[$name]:-}" ]; then
    echo "$name: $(curl -s "http://${admin_addr[$name]}/metrics" | grep -E '^promptgate_shadow_calls_(started|completed|failed|skipped)' | tr '\n' ' ')" >&2
  fi
done
GAP_CHUNK_MS=$GAP_CHUNK_MS python3 "$here/report.py" "$out" "$ROUNDS" "$RATE" "$DURATION" "$(getconf CLK_TCK)" "$cpu_args" "$rss" "${cases[@]}"
