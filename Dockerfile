# syntax=docker/dockerfile:1
#
# The Volley gateway as a container image: the `volley` binary and the built
# dashboard on a distroless base, run as uid 65532.
#
#   docker build -t volley .                       # or: podman build --format docker -t volley .
#   docker run --rm -p 8081:8081 \
#     -v "$PWD/gateway.yaml:/opt/volley/config/gateway.yaml:ro" volley
#
# The image's own config (packaging/container/gateway.yaml) has no secret, so
# the gateway refuses to start until a config with `tableros_secret_key` is
# mounted over it. Why this base and this health check:
# docs/decisions/2026-12-07-container-image.md. Kubernetes: packaging/kubernetes/.
# cli/tests/container.rs checks this file and runs its entry command.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=22

# ---- the dashboard: web/ -> /src/web/dist -------------------------------------
FROM docker.io/library/node:${NODE_VERSION}-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# ---- the binary: cargo build --release -> /out/volley --------------------------
# bookworm, like the runtime base below: the binary needs the same glibc.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY protocol/ protocol/
COPY engine/ engine/
COPY connector/ connector/
COPY bench/ bench/
COPY cli/ cli/
COPY testkit/ testkit/
# The caches keep the registry and the compiled dependencies between builds;
# the binary is copied out of the cache mount, which later stages cannot see.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p volley --bin volley \
 && install -D -m 0755 target/release/volley /out/volley

# ---- the runtime image -----------------------------------------------------------
# glibc, libgcc_s, CA certificates and tzdata; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/volley /usr/local/bin/volley
COPY --from=web /src/web/dist /opt/volley/web/dist
COPY packaging/container/gateway.yaml /opt/volley/config/gateway.yaml
# The config's relative paths (static_dir: web/dist) and the relative
# --config below resolve here.
WORKDIR /opt/volley
# Numeric, so that Kubernetes' runAsNonRoot can check it ("nonroot" in the
# base image's /etc/passwd).
USER 65532:65532
ENV RUST_LOG=info
EXPOSE 8081
# The gateway closes every connection with 1001 and exits 0 on SIGTERM.
STOPSIGNAL SIGTERM
# No curl in the image: the binary probes itself (`volley health`, default
# http://127.0.0.1:8081/health, its own 3 s timeout). Plain HTTP only: with a
# tls: section, disable this (--no-healthcheck) and probe from outside.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/volley", "health"]
ENTRYPOINT ["/usr/local/bin/volley", "gateway"]
CMD ["--config", "config/gateway.yaml"]
