# syntax=docker/dockerfile:1
# lagdns container image.
#
#   docker build -t lagdns \
#       --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run -d --name lagdns \
#       -v /etc/lagdns:/etc/lagdns:ro \
#       -e PGPASSWORD \
#       -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:8053:8053/tcp \
#       lagdns
#
# The config is not baked in: mount the directory that holds yours at /etc/lagdns
# (LAGDNS_CONFIG points at /etc/lagdns/lagdns.toml). Mount the directory, not the
# file: a single-file bind mount stays on the file's old inode, so an editor that saves
# by writing a new file and renaming it (most do) leaves the container reading the old
# config even after SIGHUP. Inside the container lagdns must listen on all
# interfaces, e.g.
#   [dns]  listen = ["0.0.0.0:53"]      [http]  listen = "0.0.0.0:8053"
#
# Port 53 as a non-root user: the binary carries the file capability
# cap_net_bind_service (set in the build stage; BuildKit keeps it through
# COPY --from). That capability must stay in the container's bounding set: Docker's
# default set has it, but with `--cap-drop ALL` add `--cap-add NET_BIND_SERVICE`
# (otherwise the kernel refuses to exec the binary). If your runtime drops file
# capabilities or forbids them (also `--security-opt no-new-privileges`), listen on
# 5353 instead and publish 53 to it:
#   listen = ["0.0.0.0:5353"]   and   -p 53:5353/udp -p 53:5353/tcp
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

# ---- build ----------------------------------------------------------------------
FROM rust:1-bookworm AS build
# Debian's bookworm packages do not change under us except for security fixes, and
# pinning their exact versions would break the build at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --no-default-features: the image runs `serve`, never `lagdns demo`, so it is built
# without the demo and the test-cluster code (the workspace crate localpg).
# The cargo registry and the target directory are BuildKit cache mounts, kept between
# builds: after a source change cargo recompiles lagdns itself, not every dependency.
# The cached target/ is not part of the image, so the binary is installed from it in
# this same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --no-default-features --bin lagdns \
 && install -m 0755 target/release/lagdns /usr/local/bin/lagdns \
 && setcap cap_net_bind_service=+ep /usr/local/bin/lagdns \
 && getcap /usr/local/bin/lagdns

# ---- run ------------------------------------------------------------------------
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 lagdns \
 && useradd --system --uid 10001 --gid lagdns --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin lagdns \
 && mkdir -p /etc/lagdns
COPY --from=build /usr/local/bin/lagdns /usr/local/bin/lagdns

# OCI image annotations (https://github.com/opencontainers/image-spec, annotations.md).
# VERSION follows Cargo.toml; REVISION (the git commit) and CREATED (RFC 3339) are
# given at build time, see the top of this file.
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="lagdns" \
      org.opencontainers.image.description="Authoritative DNS for PostgreSQL primaries and lag-aware read replicas" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

ENV LAGDNS_CONFIG=/etc/lagdns/lagdns.toml
USER 10001:10001
EXPOSE 53/udp 53/tcp 8053/tcp
# Healthy while `lagdns status` succeeds against the HTTP listener: it fails when the
# server cannot be reached (see "Commands" in the README for its exit codes). The
# table it prints is kept by Docker (`docker inspect --format '{{json .State.Health}}'`).
# It assumes http.listen on port 8053 reachable from inside the container (0.0.0.0 or
# 127.0.0.1, and 127.0.0.1 in http.allow if you set one); otherwise override it with
# `docker run --health-cmd 'lagdns status --http 127.0.0.1:PORT || exit 1'`.
# `|| exit 1`: Docker reserves the exit code 2, which `lagdns status` may use.
HEALTHCHECK --interval=15s --timeout=10s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "/usr/local/bin/lagdns status --http 127.0.0.1:8053 || exit 1"]
# SIGTERM (docker stop) shuts lagdns down cleanly; SIGHUP (docker kill -s HUP)
# reloads the mounted config.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/lagdns"]
CMD ["serve"]
