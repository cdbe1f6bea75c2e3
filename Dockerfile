# The `cairn` binary in a small runtime image, run as a non-root user.
# Build: docker build -t cairn .   (docker-compose.yml builds it for you)

# ---- build stage: the workspace, in release ----
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev clang g++ make pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cairn --bin cairn \
 && strip target/release/cairn

# ---- runtime stage: the binary, its configs, curl for health checks ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl coreutils \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/cairn cairn \
 && mkdir -p /data /etc/cairn \
 && chown cairn:cairn /data
COPY --from=build /src/target/release/cairn /usr/local/bin/cairn
COPY docker/coordinator.toml docker/worker.toml /etc/cairn/
USER cairn
VOLUME ["/data"]
EXPOSE 8686 7070
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["--help"]
