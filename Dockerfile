# syntax=docker/dockerfile:1
# redrive-operator: a static (musl) release binary in a distroless image, non-root, no shell.
#
#   docker build -t redrive-operator:0.1.0 .
#
# The build stage is what scripts/build-musl.sh runs (and tests) without Docker: same target,
# same command, from exactly the files copied below.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# musl-tools: the x86_64-linux-musl-gcc that aws-lc-sys (the TLS crypto of kube and the AWS SDK)
# compiles its C code with.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
# Workspace members: `--locked` needs every member's manifest; the emulator backs `demo`.
COPY crates/ crates/
COPY examples/ examples/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin redrive-operator \
 && cp target/x86_64-unknown-linux-musl/release/redrive-operator /redrive-operator

# Static binary only: no shell, no package manager, CA certificates and /etc/passwd included.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /redrive-operator /redrive-operator
# The distroless `nonroot` user, numeric so runAsNonRoot can verify it.
USER 65532:65532
# In-cluster mode (the Helm chart passes only flags); /metrics, /livez, /readyz on :8080.
EXPOSE 8080
ENTRYPOINT ["/redrive-operator", "run"]
