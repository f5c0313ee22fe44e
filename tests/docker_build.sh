#!/usr/bin/env bash
# Proves the Dockerfile builds, on machines without a Docker engine:
#   1. the build context is made from .dockerignore (an allow-list: `*`, then
#      `!path` lines), so only what Docker would send is there;
#   2. the `build` stage is replayed in a temporary directory: each COPY copies
#      from that context (a source missing from it fails), each RUN runs —
#      with `cargo build --release` turned into `cargo build --offline` so the
#      repository's own target directory (debug, dependencies compiled) is
#      reused instead of compiling everything again;
#   3. the runtime stage's COPY sources must be in the context too.
# The dependency-cache step thereby proves its stand-ins cover every target
# Cargo.toml declares, and the final step proves the real build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

fail() {
    echo "docker_build: $*" >&2
    exit 1
}

scratch=$(mktemp -d)
context=$scratch/context
work=$scratch/work
mkdir -p "$context" "$work"

# The copy is the same package as the repository, so its build lands on the
# same artifacts in the shared target directory: after a successful run they
# are what the repository's own files build, but a failed run may leave the
# stand-ins' build there, looking up to date. Then mark the repository's
# crate roots changed, so its next build compiles them again.
finish() {
    local status=$?
    if ((status != 0)); then
        touch src/lib.rs src/main.rs crates/*/src/lib.rs
    fi
    rm -rf "$scratch"
    return "$status"
}
trap finish EXIT

# 1. The build context.
mapfile -t patterns < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' .dockerignore | grep -v '^$')
[[ ${patterns[0]:-} == '*' ]] || fail ".dockerignore must start with '*' (an allow-list)"
for pattern in "${patterns[@]:1}"; do
    [[ $pattern == '!'* ]] || fail ".dockerignore: '$pattern': only '!path' lines follow '*'"
    path=${pattern#!}
    [[ -e $path ]] || fail ".dockerignore: '$path' does not exist"
    cp -a --parents "$path" "$context/"
done

# 2. and 3. The Dockerfile, one instruction per line (continuations joined).
stage=""
built_with_cargo=false
while IFS= read -r line; do
    read -r instruction rest <<<"$line"
    case ${instruction^^} in
    FROM)
        stage=$(sed -nE 's/.*[[:space:]][Aa][Ss][[:space:]]+([^[:space:]]+)$/\1/p' <<<"$rest")
        ;;
    WORKDIR)
        [[ $stage != build || $rest == /src ]] || fail "the build stage's WORKDIR must be /src (found $rest)"
        ;;
    COPY)
        if [[ $rest == --from=build\ * ]]; then
            # What the runtime stage takes from the build stage must be what
            # that stage builds.
            read -r _ from_path _ <<<"$rest"
            [[ $from_path == /src/target/release/promptgate ]] ||
                fail "COPY --from=build $from_path: the build stage makes /src/target/release/promptgate"
            continue
        fi
        [[ $rest == --from=* ]] && continue
        # Flags such as --chown=… do not change what is copied.
        read -r -a parts <<<"$(sed -E 's/(^|[[:space:]])--[a-z-]+=[^[:space:]]+//g' <<<"$rest")"
        destination=${parts[-1]}
        for source in "${parts[@]:0:${#parts[@]}-1}"; do
            [[ -e $context/$source ]] ||
                fail "COPY $source: not in the build context (add '!$source' to .dockerignore)"
            [[ $stage == build ]] || continue
            # Docker's rules: a directory's contents go into the destination;
            # a file goes into it when it ends with / (or there are several
            # sources), else becomes it.
            if [[ -d $context/$source ]]; then
                mkdir -p "$work/$destination"
                cp -a "$context/$source/." "$work/$destination/"
            elif [[ $destination == */ || ${#parts[@]} -gt 2 ]]; then
                mkdir -p "$work/$destination"
                cp -a "$context/$source" "$work/$destination/"
            else
                mkdir -p "$(dirname "$work/$destination")"
                cp -a "$context/$source" "$work/$destination"
            fi
        done
        ;;
    RUN)
        [[ $stage == build ]] || continue
        command=${rest//cargo build --release/cargo build --offline}
        if grep -q 'cargo' <<<"$command"; then
            grep -qE 'cargo build --offline --locked --bin promptgate' <<<"$command" ||
                fail "RUN $rest: only 'cargo build --release --locked --bin promptgate' is replayed here; update tests/docker_build.sh"
            built_with_cargo=true
        fi
        echo "+ (build stage) $command"
        (cd "$work" && bash -euo pipefail -c "$command") || fail "RUN $rest failed"
        ;;
    esac
done < <(sed -e ':join' -e '/\\$/{N;s/\\\n//;b join' -e '}' Dockerfile | grep -vE '^[[:space:]]*(#|$)')

$built_with_cargo || fail "the build stage never runs cargo build"
echo "docker_build: the Dockerfile's build stage builds promptgate from its build context"
