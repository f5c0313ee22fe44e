#!/usr/bin/env bash
# Installs the load generator (oha) into loadtest/.tools. Takes a few minutes
# the first time (it compiles); later runs are instant.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.tools/bin/oha" ]; then
  cargo install oha --locked --version 1.16.0 --root "$here/.tools"
fi
"$here/.tools/bin/oha" --version
