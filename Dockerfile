# promptgate container image.
#
#   docker build -t promptgate .
#   docker run --read-only -p 8080:8080 -p 9090:9090 \
#       -v promptgate-spool:/var/lib/promptgate --env-file promptgate.env promptgate
#
# The config is config/container.toml, copied to /etc/promptgate/promptgate.toml:
# it takes every per-deployment value (client key digest, admin token, S3
# bucket, provider keys) from the environment — its header lists the
# variables. Mount your own file over /etc/promptgate/ to change more.
#
# No Docker engine runs on this project's CI machines: tests/docker_build.sh
# (run by tests/run) builds the binary from exactly the files the `build`
# stage copies, so a missing COPY fails CI.

# --- build -------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: the real manifest with an empty
# stand-in for every target it declares, so this slow step (the whole
# dependency tree) is redone only when Cargo.toml or Cargo.lock change.
# Every crate of the workspace has its manifest here and an empty lib.rs.
COPY Cargo.toml Cargo.lock ./
COPY crates/promptgate-core/Cargo.toml crates/promptgate-core/
COPY crates/promptgate-log/Cargo.toml crates/promptgate-log/
COPY crates/promptgate-analyze/Cargo.toml crates/promptgate-analyze/
RUN mkdir -p src/bin examples benches \
    && for crate in promptgate-core promptgate-log promptgate-analyze; do \
           mkdir -p "crates/$crate/src" && touch "crates/$crate/src/lib.rs"; \
       done \
    && touch src/lib.rs \
    && for target in src/main.rs src/bin/promptgate-sim.rs examples/stream_probe.rs examples/instant_upstream.rs benches/hot_path.rs benches/eval_harness.rs benches/allocations.rs; do \
           echo 'fn main() {}' > "$target"; \
       done
RUN cargo build --release --locked --bin promptgate

# The real sources. `touch`: copied files keep their (older) timestamps, and
# cargo would otherwise take the stand-ins' build for up to date.
COPY crates ./crates
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN touch src/lib.rs src/main.rs crates/*/src/lib.rs \
    && cargo build --release --locked --bin promptgate

# --- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 promptgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home promptgate \
    && mkdir -p /etc/promptgate /var/lib/promptgate \
    && chown 10001:10001 /var/lib/promptgate
COPY --from=build /src/target/release/promptgate /usr/local/bin/promptgate
COPY config/container.toml /etc/promptgate/promptgate.toml
# The only path the gateway writes (the audit spool, and a local audit
# directory if configured): a volume, so the root filesystem can be read-only
# (`docker run --read-only`) and the spool survives a restart.
VOLUME ["/var/lib/promptgate"]
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/promptgate
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["promptgate"]
CMD ["serve", "--config", "/etc/promptgate/promptgate.toml"]
