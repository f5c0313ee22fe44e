#!/usr/bin/env bash
# Renders the Helm chart (deploy/helm/promptgate) for each documented value
# set and checks what comes out; run by tests/run, safe to run again:
#   1. installs its tools from pinned files into deploy/.tools (once; again
#      when a pin changes): tools/requirements.txt (Helm's Go SDK as a Python
#      package, the Kubernetes schemas, a PromQL parser) and tools/package.json
#      + package-lock.json (the Prometheus Operator's CRD schemas);
#   2. per value set (values.yaml alone, then with each ci/*.yaml): strict
#      `helm lint` and render (tools/render.py); every core object against the
#      Kubernetes schemas of the oldest and newest versions the chart supports,
#      unknown fields rejected (tools/validate.py); ServiceMonitor and
#      PrometheusRule against the Operator's schemas (tools/validate_crds.mjs);
#      the pod template against the config it mounts (ports, termination
#      grace); and the rendered promptgate.toml with its prompt files through
#      `promptgate check-config`, with the Secret's variables set to stand-ins;
#   3. config/grafana/alerts.yml (the chart's PrometheusRule) through
#      tools/check_rules.py.
# PROMPTGATE_BIN names the binary to check configs with (default: cargo
# builds target/debug/promptgate).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(cd .. && pwd)
CHART=helm/promptgate
TOOLS=.tools
# The chart's kubeVersion floor and the newest schemas kubernetes-validate has.
KUBERNETES_VERSIONS=(1.27.0 1.37.0)
PYTHON=${PYTHON:-python3}

wanted=$(cat tools/requirements.txt tools/package-lock.json <("$PYTHON" --version) | sha256sum | cut -d' ' -f1)
if [[ ! -f $TOOLS/.stamp || $(<"$TOOLS/.stamp") != "$wanted" ]]; then
    echo "installing the chart tools into deploy/$TOOLS"
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r tools/requirements.txt
    mkdir -p "$TOOLS/node"
    cp tools/package.json tools/package-lock.json "$TOOLS/node/"
    npm ci --prefix "$TOOLS/node" --no-audit --no-fund --loglevel=error >/dev/null
    echo "$wanted" >"$TOOLS/.stamp"
fi
PY=$TOOLS/venv/bin/python
# Beside the installed node_modules, where node resolves its imports from.
cp tools/validate_crds.mjs "$TOOLS/node/validate_crds.mjs"

if [[ -z ${PROMPTGATE_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --quiet --bin promptgate)
    PROMPTGATE_BIN=$ROOT/target/debug/promptgate
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Stand-ins for what the chart's Secret holds, so check-config can resolve
# every *_env reference the way a pod would.
export PROMPTGATE_CLIENT_KEY_SHA256=$(printf '%s' stand-in-client-key | sha256sum | cut -d' ' -f1)
export PROMPTGATE_ADMIN_TOKEN=stand-in-admin-token
export PROMPTGATE_UNIT_KEY_SECRET=stand-in-unit-key-secret
export PROMPTGATE_AUDIT_BUCKET=stand-in-bucket
export OPENAI_API_KEY=stand-in ANTHROPIC_API_KEY=stand-in

failed=0
value_sets=("" "$CHART"/ci/*.yaml)
for values in "${value_sets[@]}"; do
    name=$(basename "${values:-values.yaml}" .yaml)
    echo "--- value set: ${values:-$CHART/values.yaml}"
    out=$work/$name
    # Helm's SDK logs every symlinked file (files/ links into config/) to
    # stderr: not news.
    if ! "$PY" tools/render.py "$CHART" "$out/manifests" ${values:+"$values"} \
        2> >(sed '/found symbolic link in path/d' >&2); then
        failed=1
        continue
    fi
    if "$PY" tools/validate.py "$out/manifests" "$out/config" "${KUBERNETES_VERSIONS[@]}"; then
        echo "core objects valid for Kubernetes ${KUBERNETES_VERSIONS[*]}; pod template agrees with the config"
    else
        failed=1
    fi
    mapfile -t crds <"$out/manifests/crds.txt"
    if ((${#crds[@]})); then
        if node "$TOOLS/node/validate_crds.mjs" "${crds[@]}"; then
            echo "${#crds[@]} Prometheus Operator objects valid"
        else
            failed=1
        fi
    fi
    if [[ -f $out/config/promptgate.toml ]]; then
        if "$PROMPTGATE_BIN" check-config "$out/config/promptgate.toml"; then
            :
        else
            echo "invalid: the rendered promptgate.toml of value set $name" >&2
            failed=1
        fi
    fi
done

echo "--- alerting rules"
"$PY" tools/check_rules.py "$ROOT/config/grafana/alerts.yml" || failed=1

if ((failed)); then
    echo "deploy/check.sh: FAILED (see the problems above)" >&2
    exit 1
fi
echo "deploy/check.sh: every value set renders and validates"
