#!/usr/bin/env bash
# Installs the load generators: oha (open loop at a fixed rate, latency-
# corrected) into loadtest/.tools, and wrk (closed loop, maximum throughput)
# from Debian's packages. oha takes a few minutes the first time (it
# compiles); later runs are instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.tools/bin/oha" ]; then
  cargo install oha --locked --version 1.16.0 --root "$here/.tools"
fi
if ! command -v wrk > /dev/null; then
  # A fresh machine's package lists may not know wrk yet.
  apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
fi
"$here/.tools/bin/oha" --version
wrk --version | head -n 1 || true # wrk prints its usage and exits 1
