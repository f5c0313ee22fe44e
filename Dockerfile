# promptgate container image. Not built in this repo's CI (no Docker engine on
# its machines); kept deliberately plain.
#
#   docker build -t promptgate .
#   docker run -p 8080:8080 -v "$PWD/config:/etc/promptgate:ro" \
#       -e OPENAI_API_KEY promptgate
#
# The config is read from /etc/promptgate/promptgate.toml. In a container the
# gateway must listen on 0.0.0.0, so the config must declare client keys
# ([[auth.clients]]); open mode is refused off loopback.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin promptgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home promptgate \
    && mkdir -p /etc/promptgate /var/lib/promptgate \
    && chown promptgate /var/lib/promptgate
COPY --from=build /src/target/release/promptgate /usr/local/bin/promptgate
USER promptgate
WORKDIR /var/lib/promptgate
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["promptgate"]
CMD ["serve", "--config", "/etc/promptgate/promptgate.toml", "--listen", "0.0.0.0:8080"]
