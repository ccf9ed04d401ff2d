# syntax=docker/dockerfile:1
# The stalewatch image: the agent (a DaemonSet, deploy/base) and the CLI (scan, db).
# Multi-stage: a Debian build stage with protoc, then a distroless runtime with only the binary
# (glibc, CA certificates for https mirrors; no shell, no package manager).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crates ./crates
COPY src ./src
COPY proto ./proto
# The registry and the target directory are build caches (BuildKit and buildah alike): a
# rebuild after a commit compiles only what changed. The binary is copied out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stalewatch \
 && strip -o /stalewatch target/release/stalewatch

# The agent runs as uid 0 with every capability dropped but SYS_PTRACE and DAC_READ_SEARCH
# (deploy/base/daemonset.yaml, docs/security.md): uid 0 owns the containerd socket and the
# hostPath state directory. The CLI may run as any user.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /stalewatch /usr/local/bin/stalewatch
ENTRYPOINT ["/usr/local/bin/stalewatch"]
CMD ["agent"]
