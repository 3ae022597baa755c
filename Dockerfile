# Herald in a container: a multi-stage build on Debian bookworm.
#
#   docker build -t herald .
#   docker run --stop-timeout 45 -p 8080:8080 -e HERALD_PUBLISHER_KEY="$(openssl rand -hex 24)" \
#     -v herald-data:/var/lib/herald herald
#
# HERALD_PUBLISHER_KEY (16+ characters) is required: the image listens on 0.0.0.0:8080, and a
# non-loopback hub refuses to start without a publisher key (or JWT verification, e.g.
# HERALD_JWT_SECRET). Every other setting is a flag after the image name or a HERALD_* / SSE_*
# environment variable (README, "Configuration"). deploy/docker-compose.yml runs two nodes on
# Redis behind nginx. What of this file was checked without a container engine:
# scripts/check-deploy.

# --- build -------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# The release profile keeps line tables for profiling (76 MB); the image drops them (15 MB) but
# keeps the symbols, so that a panic's backtrace still names functions.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
COPY . .
# The caches make a rebuild after a source change take seconds instead of minutes (BuildKit,
# the default builder since Docker 23). The binary is copied out of the cached target dir.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald \
 && install -D -m 0755 target/release/herald /out/herald

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: the trust store for outbound TLS (the hub makes none today: --jwks-file is
# a file, Redis is plain TCP), so that an image built on this one has it. Nothing else: the
# health check is the binary itself (`herald health`), so no curl.
# Not pinned to a version (hadolint DL3008): bookworm's security updates of ca-certificates
# replace the old version in the archive, so a pin would break the build instead of updating it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/herald \
      --shell /usr/sbin/nologin herald \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/herald
COPY --from=build /out/herald /usr/local/bin/herald
USER 10001:10001
# The replay window on disk (--data-dir), so that clients resume across a restart of the
# container. The directory is created above with the herald user as owner, so a new named
# volume gets that owner too. (Not used with the Redis engine: there the window is in Redis.)
VOLUME ["/var/lib/herald"]
EXPOSE 8080
# GET /healthz within 2 s, exit 0 or 1; `herald health --ready` would ask /readyz instead (it
# fails while Redis is away: better for load balancers than for restarting the container).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["herald", "health", "--url", "http://127.0.0.1:8080"]
# SIGTERM (docker stop) is a graceful shutdown: clients are told to reconnect spread over
# --shutdown-reconnect-window, the streams end within --shutdown-timeout (10 s), then the
# --data-dir history flushes (Herald gives a hung disk up to 30 s). Docker's default of 10 s
# before SIGKILL is too short: `docker stop -t 45` (or `stop_grace_period` in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["herald"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/herald"]
