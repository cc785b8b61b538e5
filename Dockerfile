# Multi-stage: build the three binaries, ship them on a slim runtime image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p reelq-worker -p reelq-sim -p reelq-cli

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/reelq-worker /src/target/release/reelq-sim \
     /src/target/release/reelq /usr/local/bin/
RUN mkdir /videos && chown 65534:65534 /videos
USER 65534:65534
