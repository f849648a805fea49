# Roundup in a container: a static-stdlib build on the official Swift image, copied into a slim
# Debian runtime with only the system libraries the binary loads (docs/deployment.md, "The binary").
#
# NOTE: this file has not been built. The development machine has no Docker engine, only the
# client, so `docker build` cannot run here. The build steps are the ones CI and
# docs/deployment.md use (`swift build -c release --static-swift-stdlib`), and the runtime
# packages are what `ldd` lists for that binary on Debian bookworm.
#
#   docker build -t roundup .
#   docker run -d --name roundup -p 127.0.0.1:8080:8080 \
#       -v roundup-data:/var/lib/roundup \
#       -v /etc/roundup/roundup.yaml:/etc/roundup/roundup.yaml:ro \
#       --env-file /etc/roundup/secrets.env roundup
#
# ROUNDUP_SERVER_HOST=0.0.0.0 (set below; environment variables override the file) lets the
# published port reach the service; put the TLS reverse proxy in front as usual.

# --- build -------------------------------------------------------------------------------------
FROM swift:6.3-bookworm AS build

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsqlite3-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The manifest names the test target too, so its folder comes along (it is not compiled).
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product roundup \
    && install -D -s -m 0755 "$(swift build -c release --static-swift-stdlib --show-bin-path)/roundup" /out/roundup \
    && ! ldd /out/roundup | grep -E 'libswift|libFoundation|libdispatch'

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libc6 libstdc++6 libgcc-s1 libsqlite3-0 zlib1g libxml2 tzdata ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/roundup --shell /usr/sbin/nologin roundup \
    && install -d -o roundup -g roundup -m 0700 /var/lib/roundup \
    && install -d -m 0755 /etc/roundup

COPY --from=build /out/roundup /usr/local/bin/roundup

# The database lives under the working directory (storage.path defaults to
# ./roundup-data/roundup.sqlite): keep it on a volume.
WORKDIR /var/lib/roundup
VOLUME ["/var/lib/roundup"]

USER roundup
ENV ROUNDUP_SERVER_HOST=0.0.0.0
EXPOSE 8080

# Mount the config at /etc/roundup/roundup.yaml (roundup serve exits 2 when a named config file
# is missing) and pass the secrets as ROUNDUP_* variables. SIGHUP reloads digest.* and templates;
# SIGTERM stops gracefully.
ENTRYPOINT ["/usr/local/bin/roundup"]
CMD ["serve", "--config", "/etc/roundup/roundup.yaml"]
