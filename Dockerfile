# syntax=docker/dockerfile:1
# Multi-stage build of the stalewatch binary into a minimal runtime image.
# The agent (containerd inventory, metrics) lands with issue 3; today the image runs
# `stalewatch scan` and `stalewatch db`.
FROM rust:1.89-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crates ./crates
COPY src ./src
COPY proto ./proto
RUN cargo build --release --locked && strip target/release/stalewatch

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/stalewatch /usr/local/bin/stalewatch
USER nonroot
ENTRYPOINT ["/usr/local/bin/stalewatch"]
CMD ["--help"]
