# One image for every reelq binary (reelq, reelq-worker, reelq-sim). Build with BuildKit
# (`docker build -t reelq:0.1.0 .`, Docker 23 or later): the cargo registry and target
# directory are cache mounts, so a source change rebuilds reelq's crates, not its
# dependencies. `deploy/` and `docker-compose.yml` use this image; the deployment test
# (`crates/reelq-worker/tests/it/deployment.rs`) lints this file with hadolint.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p reelq-worker -p reelq-sim -p reelq-cli \
 && mkdir /out \
 && cp target/release/reelq-worker target/release/reelq-sim target/release/reelq /out/

FROM debian:bookworm-slim
# ca-certificates for https to providers and S3; its version is the base release's own.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# The non-root user's data directory: the default local store (`./data`) lands in it.
RUN mkdir -p /var/lib/reelq && chown 65534:65534 /var/lib/reelq
WORKDIR /var/lib/reelq
USER 65534:65534
# 8080: reelq serve (API, dashboard) and the simulator; 8081: callbacks; 9100: worker ops.
EXPOSE 8080 8081 9100
# The worker's readiness by default; compose and Kubernetes probe each service its own way.
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
  CMD ["reelq-worker", "--probe", "http://127.0.0.1:9100/readyz"]
CMD ["reelq-worker"]
