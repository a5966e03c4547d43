# syntax=docker/dockerfile:1
# One image for every role: `outpost all` (default), `outpost ingest|media|telemetry|plotting|gateway`.
#
#   docker build -t outpost .
#   docker run --rm -p 8080:8080 -e OUTPOST_GATEWAY_ADDR=0.0.0.0:8080 outpost
#
# Stages: chef (Rust + cargo-chef) → planner (the dependency recipe) → builder (dependencies
# cooked in their own layer, then the workspace) → runtime (distroless, non-root). A change to
# Outpost's code re-runs only the last `cargo build`; the dependency layer is rebuilt only when
# Cargo.toml or Cargo.lock change.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin outpost --recipe-path recipe.json
COPY . .
# Shown by the gateway's /version (e.g. --build-arg OUTPOST_GIT_SHA=$(git rev-parse --short HEAD)).
ARG OUTPOST_GIT_SHA=""
ENV OUTPOST_GIT_SHA=${OUTPOST_GIT_SHA}
RUN cargo build --release --locked --bin outpost \
    && install -D -m 0555 target/release/outpost /out/outpost \
    && mkdir -p /out/data

# glibc (and libgcc) of Debian 12, as in the builder; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/outpost /usr/local/bin/outpost
# The embedded mode's data directory (`docker run` without PostgreSQL/S3), writable by the user.
COPY --from=builder --chown=65532:65532 /out/data /data
# The nonroot user of distroless images (65532), numeric so Kubernetes can verify runAsNonRoot.
USER 65532:65532
# In a container, listen on every interface (the binary's own defaults are loopback only);
# Kubernetes manifests set these per Deployment too.
ENV OUTPOST_GATEWAY_ADDR=0.0.0.0:8080 \
    OUTPOST_INGEST_ADDR=0.0.0.0:50051 \
    OUTPOST_MEDIA_ADDR=0.0.0.0:50052 \
    OUTPOST_TELEMETRY_ADDR=0.0.0.0:50053 \
    OUTPOST_PLOTTING_ADDR=0.0.0.0:50054 \
    OUTPOST_DATA_DIR=/data
WORKDIR /data
EXPOSE 8080 50051 50052 50053 50054
# checkov:skip=CKV_DOCKER_2: Kubernetes probes each role its own way (gRPC health for the services, HTTP for the gateway; see k8s/base), and the distroless image has no client for a HEALTHCHECK to run.
ENTRYPOINT ["outpost"]
CMD ["all"]
