#!/usr/bin/env bash
# What the gateway costs over calling its provider directly, measured side by
# side in one run with the cases interleaved round by round, against an
# upstream that is never the ceiling (examples/instant_upstream.rs:
# multi-threaded, answers computed at start-up):
#   direct      — straight to the upstream (the baseline)
#   bare        — through examples/bare_forwarder.rs, a bare hyper forwarder:
#                 the least any proxy adds here, the yardstick for the targets
#   passthrough — through the gateway, plain routing
#   experiment  — through the gateway, a 2-variant experiment (assignment +
#                 template rendering + body rewrite on every request)
#   experiment_audit_local / _s3 — plus the audit log (local dir / SeaweedFS)
#   shadow_0pct / shadow_100pct — experiment + local audit + a shadow variant
#                 sampled at 0% and 100% (shadow calls go to the same upstream)
#   direct_stream / bare_stream / passthrough_stream — SSE streams of CHUNKS
#                 content events: the load generator on instant streams
#                 (throughput, latency, TTFB, CPU per stream and per chunk),
#                 then in the same round examples/stream_probe on streams paced
#                 GAP_CHUNK_MS apart by the simulator (promptgate-sim, which
#                 reads x-sim-chunk-ms), through a second bare forwarder and
#                 gateway in front of it (gaps between SSE events)
#
# Two modes:
#   loadtest/run.sh                     # fixed rate: oha open loop, latency-corrected,
#                                       # 1000 req/s, 10 s per run, 3 rounds
#   RATE=5000 GAPS=0 loadtest/run.sh    # where CPU per request and p99.9 are judged
#   MAX=1 DURATION=10 loadtest/run.sh   # closed loop: maximum throughput, wrk -t1 -c32
#   SMOKE=1 loadtest/run.sh             # a 1-second run of each case, for CI
#   CASES="direct bare passthrough" loadtest/run.sh   # a subset
#   GAP_CHUNK_MS=5 loadtest/run.sh      # the probe's streams paced 5 ms apart (default 2)
#   GAPS=0 loadtest/run.sh              # skip the stream probe runs (needed above
#                                       # PROBE_MAX_RATE, 1000: the probe's simulator
#                                       # has one thread)
#   UPSTREAM=sim loadtest/run.sh        # every case on the one-thread simulator (the
#                                       # old harness: capped near 17k req/s)
#   SIM_FIRST_BYTE_MS=20 loadtest/run.sh  # a provider that takes 20 ms to answer (implies
#                                       # UPSTREAM=sim: the instant upstream has no delays)
#
# Every run first checks that the baseline is not the ceiling: `direct` must
# reach at least 2 × `bare`'s throughput (closed loop; in fixed-rate mode a
# HEADROOM-second wrk run of each before the rounds), else the report prints
# "baseline capped" and judges no target. For each case and round the CPU
# time (utime + stime) of the proxy process and of the upstream is read from
# /proc around the run and divided by the responses served.
#
# Prints markdown tables and where the targets stand (loadtest/report.py); raw
# load-generator JSON, CPU readings and the processes' files go to
# loadtest/out/. Shared helpers are in loadtest/lib.sh; loadtest/scale.sh has
# the 1,000-connection, soak and reload runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
HEADROOM=${HEADROOM:-3}
WRK_THREADS=${WRK_THREADS:-1}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-2}
CHUNKS=${CHUNKS:-20}
if [ "${SMOKE:-0}" = 1 ]; then RATE=200; DURATION=1; ROUNDS=1; HEADROOM=1; fi
GAP_CHUNK_MS=${GAP_CHUNK_MS:-2}
GAPS=${GAPS:-1}
MAX=${MAX:-0}
UPSTREAM=${UPSTREAM:-instant}
if [ "$SIM_FIRST_BYTE_MS" != 0 ]; then UPSTREAM=sim; fi
case $UPSTREAM in instant|sim) ;; *) echo "UPSTREAM is instant or sim, not $UPSTREAM" >&2; exit 2 ;; esac
# The probe is open loop at RATE: it has nothing to say about a closed-loop run.
if [ "$MAX" = 1 ]; then GAPS=0; fi
all_cases="direct bare passthrough experiment experiment_audit_local experiment_audit_s3 shadow_0pct shadow_100pct direct_stream bare_stream passthrough_stream"
CASES=${CASES:-$all_cases}
want() { [[ " $CASES " == *" $1 "* ]]; }
for c in $CASES; do
  [[ " $all_cases " == *" $c "* ]] || { echo "unknown case $c (cases: $all_cases)" >&2; exit 2; }
done
probing=0
if [ "$GAPS" = 1 ] && { want direct_stream || want bare_stream || want passthrough_stream; }; then probing=1; fi
# The probe's paced streams go to the one-thread simulator. At 1,000 streams/s
# it keeps up; at 5,000 (session 11) its connections piled up until every
# process ran out of file descriptors, and the gaps measured that, not the
# proxies. PROBE_MAX_RATE raises the limit for a faster simulator.
PROBE_MAX_RATE=${PROBE_MAX_RATE:-1000}
if [ "$probing" = 1 ] && [ "$RATE" -gt "$PROBE_MAX_RATE" ]; then
  echo "the stream probe runs at RATE on a one-thread simulator, which keeps up with $PROBE_MAX_RATE streams/s:" >&2
  echo "use GAPS=0 at RATE=$RATE (measure gaps in a run at RATE <= $PROBE_MAX_RATE), or set PROBE_MAX_RATE" >&2
  exit 2
fi

require_wrk
if [ "$MAX" != 1 ]; then require_oha; fi
build_release --example bare_forwarder --example stream_probe --example instant_upstream
# Earlier runs' files would be read as this run's.
rm -f "$out"/gaps-*.json "$out"/cpu-*.txt "$out"/headroom-*.json

# The upstream every load-generator run goes to. The shadow variant's calls go
# to a provider of their own, as a candidate model's would; the instant
# upstream serves both on its threads, but a one-thread simulator would queue
# the served call behind its own shadow, so UPSTREAM=sim starts a second one.
if [ "$UPSTREAM" = instant ]; then
  start_listener upstream "$bin/examples/instant_upstream" --listen 127.0.0.1:0 \
    --threads "$UPSTREAM_THREADS" --chunks "$CHUNKS"
  stream_events=$(sed -n 's/^chat stream events: //p' "$out/upstream.out")
  upstream_addr=${listen_addr[upstream]}
  shadow_addr=$upstream_addr
else
  start_sim upstream
  upstream_addr=${listen_addr[upstream]}
  stream_events=0 # the simulator's events per stream depend on the request: not divided
  if want shadow_0pct || want shadow_100pct; then
    start_sim shadow-sim
    shadow_addr=${listen_addr[shadow-sim]}
  fi
fi
upstream_pid=${listen_pid[upstream]}
provider_addr=$upstream_addr

start_bare() { # name upstream-addr — the bare forwarder, recorded like a gateway
  start_listener "$1" "$bin/examples/bare_forwarder" --listen 127.0.0.1:0 --upstream "http://$2" --threads 2
  gateway_addr[$1]=${listen_addr[$1]}
  gateway_pid[$1]=${listen_pid[$1]}
}
# Always started: the headroom check needs it.
start_bare bare "$upstream_addr"

shadow_config() { # sample-percent: a zero-weight candidate on its own provider, in shadow
cat <<TOML
$(base_config)
[providers.shadow_sim]
kind = "openai"
base_url = "http://$shadow_addr/v1"
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

# The stream probe needs the simulator's pacing (x-sim-chunk-ms), so it goes to
# a simulator through a bare forwarder and a gateway of its own.
if [ "$probing" = 1 ]; then
  start_sim paced-sim
  sim_addr=${listen_addr[paced-sim]}
  sim_pid=${listen_pid[paced-sim]}
  if want bare_stream; then start_bare bare_paced "$sim_addr"; fi
  if want passthrough_stream; then
    start_gateway plain_paced "$(provider_addr=$sim_addr base_config)"
  fi
fi

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

# wrk, closed loop for SECONDS: as fast as the connections go. JSON to the file.
wrk_run() { # json-file url body seconds
  WRK_BODY="$3" WRK_OUT="$1" "$WRK" -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${4}s" -s "$here/post.lua" "$2" \
    > "${1%.json}.txt"
}
# MAX=1: wrk, closed loop (maximum throughput); otherwise oha, open loop at
# RATE with latency correction (latency and CPU per request).
run_load() { # json-file url body
  if [ "$MAX" = 1 ]; then
    wrk_run "$1" "$2" "$3" "$DURATION"
  else
    "$OHA" --no-tui --output-format json -q "$RATE" --latency-correction -z "${DURATION}s" -w \
      -c "$CONNECTIONS" -m POST -H 'content-type: application/json' -H 'authorization: Bearer load' \
      -H 'x-user-id: user-1' -d "$3" "$2" > "$1"
  fi
}

ticks_of() { if [ -n "$1" ]; then cpu_ticks "$1"; else echo 0; fi; }
# One run with the CPU ticks of the proxy (none for direct) and of the upstream
# read around it: "proxy-ticks upstream-ticks" ("-" for no proxy) to cpu-CASE-ROUND.txt.
measure() { # case proxy-pid|"" upstream-pid round command…
  local name=$1 proxy=$2 upstream=$3 round=$4 proxy0 upstream0
  shift 4
  proxy0=$(ticks_of "$proxy")
  upstream0=$(cpu_ticks "$upstream")
  "$@"
  local proxy_ticks=-
  if [ -n "$proxy" ]; then proxy_ticks=$(( $(cpu_ticks "$proxy") - proxy0 )); fi
  echo "$proxy_ticks $(( $(cpu_ticks "$upstream") - upstream0 ))" > "$out/cpu-$name-$round.txt"
}
url() { echo "http://${gateway_addr[$1]}/v1/chat/completions"; }
direct_url="http://$upstream_addr/v1/chat/completions"
# One case of one round: the load generator on the case's URL.
load_case() { # case proxy-name|"" url body round
  local pid=""
  if [ -n "$2" ]; then pid=${gateway_pid[$2]}; fi
  measure "$1" "$pid" "$upstream_pid" "$5" run_load "$out/$1-$5.json" "$3" "$4"
}
# The stream probe (examples/stream_probe.rs): the same stream request, open
# loop at RATE, the simulator asked (x-sim-chunk-ms, forwarded like any
# header) to space its SSE frames GAP_CHUNK_MS apart; JSON to gaps-CASE-ROUND.
probe_gaps() { # case proxy-name|"" round
  [ "$probing" = 1 ] || return 0
  local pid="" target="http://$sim_addr/v1/chat/completions"
  if [ -n "$2" ]; then pid=${gateway_pid[$2]}; target=$(url "$2"); fi
  measure "gaps_$1" "$pid" "$sim_pid" "$3" probe_run "$target" "$out/gaps-$1-$3.json"
}
probe_run() { # url json-file
  "$bin/examples/stream_probe" --url "$1" --rate "$RATE" --duration "$DURATION" --body "$stream_body" \
    --header 'authorization: Bearer load' --header 'x-user-id: user-1' \
    --header "x-sim-chunk-ms: $GAP_CHUNK_MS" > "$2"
}

# Is the baseline the ceiling? In closed loop the rounds' own direct and bare
# runs answer it; otherwise (or without them) a short wrk run of each.
if [ "$MAX" != 1 ] || ! want direct || ! want bare; then
  echo "headroom check: wrk, ${HEADROOM} s each on direct and bare" >&2
  wrk_run "$out/headroom-direct.json" "$direct_url" "$body" "$HEADROOM"
  wrk_run "$out/headroom-bare.json" "$(url bare)" "$body" "$HEADROOM"
fi

for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  for c in "${cases[@]}"; do
    case $c in
      direct) load_case direct "" "$direct_url" "$body" "$round" ;;
      bare) load_case bare bare "$(url bare)" "$body" "$round" ;;
      passthrough) load_case passthrough plain "$(url plain)" "$body" "$round" ;;
      experiment) load_case experiment plain "$(url plain)" "$experiment_body" "$round" ;;
      experiment_audit_local) load_case "$c" audit_local "$(url audit_local)" "$experiment_body" "$round" ;;
      experiment_audit_s3) load_case "$c" audit_s3 "$(url audit_s3)" "$experiment_body" "$round" ;;
      shadow_0pct|shadow_100pct) load_case "$c" "$c" "$(url "$c")" "$experiment_body" "$round" ;;
      direct_stream)
        load_case direct_stream "" "$direct_url" "$stream_body" "$round"
        probe_gaps direct_stream "" "$round" ;;
      bare_stream)
        load_case bare_stream bare "$(url bare)" "$stream_body" "$round"
        probe_gaps bare_stream bare_paced "$round" ;;
      passthrough_stream)
        load_case passthrough_stream plain "$(url plain)" "$stream_body" "$round"
        probe_gaps passthrough_stream plain_paced "$round" ;;
      *) echo "unknown case $c (cases: $all_cases)" >&2; exit 2 ;;
    esac
  done
done
rss="upstream=$(status_kb "$upstream_pid" VmHWM)"
for name in "${!gateway_pid[@]}"; do
  rss="$rss $name=$(status_kb "${gateway_pid[$name]}" VmHWM)"
done

for name in shadow_0pct shadow_100pct; do
  if [ -n "${admin_addr[$name]:-}" ]; then
    echo "$name: $(curl -s "http://${admin_addr[$name]}/metrics" | grep -E '^promptgate_shadow_calls_(started|completed|failed|skipped)' | tr '\n' ' ')" >&2
  fi
done
if [ "$MAX" = 1 ]; then RATE=max; fi
GAP_CHUNK_MS=$GAP_CHUNK_MS UPSTREAM=$UPSTREAM STREAM_EVENTS=$stream_events CONNECTIONS=$CONNECTIONS \
  python3 "$here/report.py" "$out" "$ROUNDS" "$RATE" "$DURATION" "$(getconf CLK_TCK)" "$rss" "${cases[@]}"
