#!/usr/bin/env bash
# The project's single test command (CI runs it through .ci/run):
#   1. the Python test environment .venv-test, from the pinned requirements
#   2. cargo fmt --check
#   3. cargo clippy on every target, warnings are errors
#   4. every Rust test, including tests/sdk.rs, which drives the gateway with
#      the official openai/anthropic Python SDKs from .venv-test
# Runs from any directory; safe to run again and again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv-test
# Every requirements file installed into the one test venv. Add lines to
# these files (or files to this list) for further Python-side test tools.
REQUIREMENTS=(tests/sdk/requirements.txt tests/s3/requirements.txt tests/analytics/requirements.txt)
PYTHON=${PYTHON:-python3}

section() {
    printf '\n==== %s ====\n' "$*"
}

# Cargo refuses to touch Cargo.lock in CI: a lock file out of step with
# Cargo.toml is a mistake to fix before landing, not to paper over.
cargo_flags=()
if [[ ${CI:-} == true ]]; then
    cargo_flags+=(--locked)
fi

section "Python test environment: $VENV"
# The venv is rebuilt from scratch whenever the interpreter or any
# requirements file changes, so it never keeps packages no file asks for.
wanted=$(
    {
        "$PYTHON" -c 'import sys; print(sys.version)'
        for file in "${REQUIREMENTS[@]}"; do
            printf '%s\n' "$file"
            cat "$file"
        done
    } | sha256sum | cut -d' ' -f1
)
stamp=$VENV/.requirements.sha256
if [[ -x $VENV/bin/python && -f $stamp && $(<"$stamp") == "$wanted" ]]; then
    echo "up to date ($(basename "$stamp") matches)"
else
    echo "building $VENV with $("$PYTHON" --version 2>&1)"
    rm -f "$stamp"
    "$PYTHON" -m venv --clear "$VENV"
    # One pip run per file: a file pinned by hash puts pip in hash-checking
    # mode for everything in that run.
    for file in "${REQUIREMENTS[@]}"; do
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$file"
    done
    echo "$wanted" >"$stamp"
fi
"$VENV/bin/python" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null |
    grep -Ei '^(openai|anthropic|pytest|httpx2)==' | paste -sd' ' -
# tests/sdk.rs finds .venv-test by itself; naming it here makes sure an
# outside PROMPTGATE_TEST_PYTHON does not replace the environment just built.
export PROMPTGATE_TEST_PYTHON=$PWD/$VENV/bin/python

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy (warnings are errors)"
cargo clippy "${cargo_flags[@]}" --all-targets -- -D warnings

section "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${cargo_flags[@]}" --all-targets --no-fail-fast
else
    echo "(cargo-nextest not installed: using cargo test)"
    cargo test "${cargo_flags[@]}" --all-targets --no-fail-fast
fi

section "all checks passed"
