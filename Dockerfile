# syntax=docker/dockerfile:1
# Yunmo's container image, for CI with Docker (BuildKit) and internet access: `docker build -t yunmo .`.
# Without Docker or a registry, scripts/build-image.sh builds the same layout with buildah from scratch.
# See docs/container.md for running it (environment, volume, ports, the non-root user).

# Builder: Rust on Debian bookworm, plus what scripts/system-deps.sh installs for the build (cmake, g++ and
# libclang-dev: llama.cpp is compiled from source and its bindings generated with bindgen), and Python's
# venv for scripts/fetch-assets.sh, which downloads ONNX Runtime from PyPI with pip.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake g++ libclang-dev python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# ONNX Runtime first, in its own layer, so a source change does not download it again. The script checks
# the library against its pinned sha256.
COPY scripts/fetch-assets.sh scripts/fetch-assets.sh
RUN python3 -m venv /opt/pip \
 && PYTHON=/opt/pip/bin/python YUNMO_CACHE=/opt/yunmo scripts/fetch-assets.sh ort \
 && rm -rf /opt/yunmo/wheels

# .cargo/config.toml builds for x86-64-v3 (AVX2, FMA; llama.cpp picks its kernels from it). TARGET_CPU
# replaces it: `--build-arg TARGET_CPU=x86-64` for older CPUs, `native` for the build machine's own.
ARG TARGET_CPU=x86-64-v3
COPY . .
# The registry and target folders are cache mounts (kept between builds, never in a layer), so the
# stripped binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-cpu=${TARGET_CPU}" cargo build --release --locked -p yunmo-server \
 && strip --strip-all -o /opt/yunmo/yunmo target/release/yunmo \
 && install -d -m 0750 /opt/yunmo/data

# Runtime: distroless cc (Debian 12). It has exactly what the binary links (glibc, libstdc++, libgcc_s; the
# same Debian release as the builder, so the same glibc), CA certificates, /etc/passwd with the 'nonroot'
# user 65532, and /tmp; and no shell, package manager or other programs, so it is small (about 25 MB
# before Yunmo) and little is there to attack. debian:bookworm-slim would add a shell and apt (about
# 75 MB) for debugging and a curl HEALTHCHECK; the :debug-nonroot tag of this image adds busybox if needed.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /opt/yunmo/yunmo /usr/local/bin/yunmo
COPY --from=builder /opt/yunmo/lib/libonnxruntime.so.1.31.1 /usr/local/lib/libonnxruntime.so.1.31.1
# The data volume (SQLite registry and model files), writable by the non-root user.
COPY --from=builder --chown=65532:65532 /opt/yunmo/data /var/lib/yunmo
# Bind all interfaces (the default 127.0.0.1 is unreachable from outside a container); keep data on the
# volume; load ONNX Runtime from where it was copied.
ENV YUNMO__SERVER__HOST=0.0.0.0 \
    YUNMO__STORAGE__DATA_DIR=/var/lib/yunmo \
    ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so.1.31.1
USER 65532:65532
WORKDIR /var/lib/yunmo
VOLUME ["/var/lib/yunmo"]
# HTTP (KServe V2 REST, OpenAI API, management API, /metrics) and gRPC (KServe V2, grpc.health.v1).
EXPOSE 8080 8081
# No HEALTHCHECK: the image has no curl or shell to run one. Probe GET /v2/health/ready on 8080 (or
# grpc.health.v1 on 8081) from the orchestrator instead, e.g. a Kubernetes httpGet or grpc readiness probe.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/yunmo"]
CMD ["serve"]
ARG REVISION=unknown
LABEL org.opencontainers.image.title="yunmo" \
      org.opencontainers.image.description="Yunmo, a self-hostable model-as-a-service server (KServe V2, OpenAI API)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}"
