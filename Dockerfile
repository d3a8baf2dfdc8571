# lagdns container image.
#
#   docker build -t lagdns .
#   docker run -d --name lagdns \
#       -v /etc/lagdns/lagdns.toml:/etc/lagdns/lagdns.toml:ro \
#       -e PGPASSWORD \
#       -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:8053:8053/tcp \
#       lagdns
#
# The config is not baked in: mount yours at /etc/lagdns/lagdns.toml (LAGDNS_CONFIG
# points there). Inside the container it must listen on all interfaces, e.g.
#   [dns]  listen = ["0.0.0.0:53"]      [http]  listen = "0.0.0.0:8053"
#
# Port 53 as a non-root user: the binary carries the file capability
# cap_net_bind_service (set in the build stage; BuildKit keeps it through
# COPY --from). That capability must stay in the container's bounding set: Docker's
# default set has it, but with `--cap-drop ALL` add `--cap-add NET_BIND_SERVICE`
# (otherwise the kernel refuses to exec the binary). If your runtime drops file
# capabilities or forbids them, listen on 5353 instead and publish 53 to it:
#   listen = ["0.0.0.0:5353"]   and   -p 53:5353/udp -p 53:5353/tcp

# ---- build ----------------------------------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --no-default-features: the image runs `serve`, never `lagdns demo`, so it is built
# without the demo and the test-cluster code (the workspace crate localpg).
RUN cargo build --release --locked --no-default-features --bin lagdns \
 && install -m 0755 target/release/lagdns /usr/local/bin/lagdns \
 && setcap cap_net_bind_service=+ep /usr/local/bin/lagdns \
 && getcap /usr/local/bin/lagdns

# ---- run ------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 lagdns \
 && useradd --system --uid 10001 --gid lagdns --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin lagdns \
 && mkdir -p /etc/lagdns
COPY --from=build /usr/local/bin/lagdns /usr/local/bin/lagdns
ENV LAGDNS_CONFIG=/etc/lagdns/lagdns.toml
USER 10001:10001
EXPOSE 53/udp 53/tcp 8053/tcp
# SIGTERM (docker stop) shuts lagdns down cleanly; SIGHUP (docker kill -s HUP)
# reloads the mounted config.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/lagdns"]
CMD ["serve"]
