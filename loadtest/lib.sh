# Shared by loadtest/run.sh and loadtest/scale.sh (sourced, not run): finding
# the load generators, building, starting the upstreams (the instant upstream,
# the simulated provider), the bare forwarder and gateways, the experiment
# config they share, cleanup, and /proc readings.
# Expects `set -euo pipefail` in the caller.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out=${OUT:-$here/out}
bin="${CARGO_TARGET_DIR:-$root/target}/release"
mkdir -p "$out"

# oha: open loop at a fixed rate with latency correction (the latency runs).
require_oha() {
  OHA=${OHA:-$here/.tools/bin/oha}
  if [ ! -x "$OHA" ]; then
    OHA=$(command -v oha || true)
  fi
  if [ -z "$OHA" ] || [ ! -x "$OHA" ]; then
    echo "oha not found: run loadtest/install-tools.sh (or set OHA=/path/to/oha)" >&2
    exit 1
  fi
}
# wrk: closed loop (maximum throughput); oha's own closed loop tops out near
# the rates a bare forwarder reaches here, so it would be the ceiling.
require_wrk() {
  WRK=${WRK:-$(command -v wrk || true)}
  if [ -z "$WRK" ] || [ ! -x "$WRK" ]; then
    echo "wrk not found: run loadtest/install-tools.sh (or set WRK=/path/to/wrk)" >&2
    exit 1
  fi
}

# BIN_DIR=/path/release SKIP_BUILD=1: run binaries built elsewhere (say, an
# earlier commit's, for a before/after table) instead of building this tree.
bin=${BIN_DIR:-$bin}
build_release() { # extra cargo target flags, e.g. --example bare_forwarder
  if [ "${SKIP_BUILD:-0}" = 1 ]; then return; fi
  echo "building release binaries..." >&2
  (cd "$root" && cargo build --release --quiet --bin promptgate --bin promptgate-sim "$@")
}

# On exit, the servers started here get SIGINT (the gateways drain) and the
# script's own background jobs (samplers, a background oha) SIGTERM: bash
# makes background jobs ignore SIGINT unless they handle it.
pids=()
helpers=()
cleanup() {
  for pid in "${helpers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

declare -A listen_addr listen_pid
start_listener() { # name command… — a process that prints "listening on ADDR"
  local name=$1; shift
  "$@" > "$out/$name.out" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -q "listening on" "$out/$name.out" 2>/dev/null && break; sleep 0.05; done
  listen_addr[$name]=$(sed -n 's/^listening on //p' "$out/$name.out")
  listen_pid[$name]=$pid
  [ -n "${listen_addr[$name]}" ] || { echo "$name did not start" >&2; exit 1; }
}

SIM_FIRST_BYTE_MS=${SIM_FIRST_BYTE_MS:-0}
start_sim() { # name — the simulated provider on one worker thread
  start_listener "$1" "$bin/promptgate-sim" --listen 127.0.0.1:0 --threads 1 --first-byte-ms "$SIM_FIRST_BYTE_MS"
}

base_config() { # [control-weight treatment-weight] — the experiment config every gateway
  # shares, its provider at $provider_addr (the instant upstream or a simulator)
cat <<TOML
[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "http://$provider_addr/v1"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.bench]
unit_key = { header = "x-user-id" }
[[experiments.bench.variants]]
name = "control"
weight = ${1:-50}
model = "gpt-4o-mini"
providers = ["sim"]
system = "You are a concise assistant."
[[experiments.bench.variants]]
name = "treatment"
weight = ${2:-50}
model = "gpt-4o-mini"
providers = ["sim"]
system = "You are a concise assistant for {{audience}}."
params = { temperature = 0.2 }
TOML
}

local_audit='[audit]
sink = "local"
local_dir = "audit"
spool_dir = "spool"
unit_key_secret_env = "AWS_SECRET_ACCESS_KEY"'

declare -A gateway_addr gateway_pid admin_addr
start_gateway() { # name config-text → sets gateway_addr[name], gateway_pid[name], admin_addr[name]
  local dir="$out/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  printf '%s\n' "$2" > "$dir/gateway.toml"
  (cd "$dir" && exec env AWS_ACCESS_KEY_ID=load AWS_SECRET_ACCESS_KEY=loadsecret \
    "$bin/promptgate" --log-format json serve --config gateway.toml \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 2> gateway.log) &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do grep -q '"local"' "$dir/gateway.log" 2>/dev/null && break; sleep 0.05; done
  gateway_pid[$1]=$pid
  read -r "gateway_addr[$1]" "admin_addr[$1]" < <(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    fields = json.loads(line).get("fields", {})
    if fields.get("local"): print(fields["local"], fields["admin"]); break' "$dir/gateway.log")
  [ -n "${gateway_addr[$1]}" ] || { echo "gateway $1 did not start:" >&2; cat "$dir/gateway.log" >&2; exit 1; }
}

body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}]}'
stream_body='{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}]}'
experiment_body='{"model":"bench","messages":[{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}],"promptgate":{"variables":{"audience":"students"}}}'

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in CLK_TCK
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # pid VmRSS|VmHWM → KiB

# One line from an oha JSON file: req/s p50 p99 p99.9 (ms) failed (non-2xx + errors).
oha_stats() {
  python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
failed = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(d.get("errorDistribution", {}).values())
ms = lambda x: "%.3f" % (x * 1e3) if x is not None else "nan"
print("%.0f" % d["summary"]["requestsPerSec"], ms(p["p50"]), ms(p["p99"]), ms(p["p99.9"]), failed)' "$1"
}
