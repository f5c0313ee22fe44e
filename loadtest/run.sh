#!/usr/bin/env bash
# Added latency of the gateway over calling the simulated provider directly,
# at a fixed open-loop request rate (oha, latency-corrected), measured side by
# side in one run with the cases interleaved round by round:
#   direct      — straight to the simulated provider (the baseline)
#   passthrough — through the gateway, plain routing
#   experiment  — through the gateway, a 2-variant experiment (assignment +
#                 template rendering + body rewrite on every request)
#
#   loadtest/run.sh                     # 1000 req/s, 10 s per run, 3 rounds
#   RATE=5000 DURATION=20 ROUNDS=5 loadtest/run.sh
#   SMOKE=1 loadtest/run.sh             # a 1-second run of each case, for CI
#
# Prints a markdown table; raw oha JSON goes to loadtest/out/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out="$here/out"
mkdir -p "$out"

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
if [ "${SMOKE:-0}" = 1 ]; then RATE=200; DURATION=1; ROUNDS=1; fi

OHA=${OHA:-$here/.tools/bin/oha}
if [ ! -x "$OHA" ]; then
  OHA=$(command -v oha || true)
fi
if [ -z "$OHA" ] || [ ! -x "$OHA" ]; then
  echo "oha not found: run loadtest/install-tools.sh (or set OHA=/path/to/oha)" >&2
  exit 1
fi

echo "building release binaries..." >&2
(cd "$root" && cargo build --release --quiet --bin promptgate --bin promptgate-sim)
bin="$root/target/release"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The simulated provider, on one worker thread, answering instantly.
"$bin/promptgate-sim" --listen 127.0.0.1:0 --threads 1 > "$out/sim.out" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$out/sim.out" 2>/dev/null && break; sleep 0.05; done
sim_addr=$(sed -n 's/^listening on //p' "$out/sim.out")

cat > "$out/gateway.toml" <<TOML
[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "http://$sim_addr/v1"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.bench]
unit_key = { header = "x-user-id" }
[[experiments.bench.variants]]
name = "control"
weight = 50
model = "gpt-4o-mini"
providers = ["sim"]
system = "You are a concise assistant."
[[experiments.bench.variants]]
name = "treatment"
weight = 50
model = "gpt-4o-mini"
providers = ["sim"]
system = "You are a concise assistant for {{audience}}."
params = { temperature = 0.2 }
TOML
"$bin/promptgate" --log-format json serve --config "$out/gateway.toml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2> "$out/gateway.log" &
gateway_pid=$!
pids+=($gateway_pid)
for _ in $(seq 100); do grep -q '"local"' "$out/gateway.log" 2>/dev/null && break; sleep 0.05; done
gateway_addr=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    local = json.loads(line).get("fields", {}).get("local")
    if local: print(local); break' "$out/gateway.log")

body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}]}'
experiment_body='{"model":"bench","messages":[{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}],"promptgate":{"variables":{"audience":"students"}}}'
run_case() { # name url round body
  "$OHA" --no-tui --output-format json -q "$RATE" -z "${DURATION}s" --latency-correction -w \
    -c "$CONNECTIONS" -m POST -H 'content-type: application/json' -H 'authorization: Bearer load' \
    -H 'x-user-id: user-1' -d "$4" "$2" > "$out/$1-$3.json"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
gw_cpu_start=$(cpu_ticks "$gateway_pid")
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  run_case direct "http://$sim_addr/v1/chat/completions" "$round" "$body"
  run_case passthrough "http://$gateway_addr/v1/chat/completions" "$round" "$body"
  run_case experiment "http://$gateway_addr/v1/chat/completions" "$round" "$experiment_body"
done
gw_cpu_end=$(cpu_ticks "$gateway_pid")
gw_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$gateway_pid/status")

python3 "$here/report.py" "$out" "$ROUNDS" "$RATE" "$DURATION" \
  "$(( (gw_cpu_end - gw_cpu_start) ))" "$(getconf CLK_TCK)" "$gw_rss_kb" direct passthrough experiment
