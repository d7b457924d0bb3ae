# pg-airlock container image. Build: docker build -t pg-airlock .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pg-airlock

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 airlock \
    && install -d -o airlock -g airlock -m 700 /var/lib/pg-airlock
# The audit trail lives here (docs/compose/airlock.toml): a directory the
# unprivileged user can write, meant to be a volume so the trail outlives
# the container.
COPY --from=build /src/target/release/pg-airlock /usr/local/bin/pg-airlock
COPY rules /etc/pg-airlock/rules
USER airlock
EXPOSE 6432 9187
ENTRYPOINT ["pg-airlock"]
CMD ["run", "--config", "/etc/pg-airlock/airlock.toml"]
