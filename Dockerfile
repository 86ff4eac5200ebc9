# The TSVA gateway: `tsva serve` with the embedded ONNX Runtime backend and the shipped model, or
# `tsva serve --backend triton --triton-urls HOST:8001` in front of Triton. No torch in this image.
#   docker build -t tsva-gateway .                              # online: python:3.11-slim-bookworm, PyPI
#   make image                                                  # offline: local base + wheelhouse
#   docker run --rm -p 50051:50051 -p 9464:9464 tsva-gateway
# Offline (air-gapped) builds: scripts/base_image.sh makes a bookworm base locally and
# scripts/wheelhouse.sh fills requirements/wheelhouse/; then
#   docker build --network none --build-arg PYTHON_IMAGE=tsva-base:bookworm -t tsva-gateway .
# installs from the wheelhouse alone. A wheelhouse with wheels is always used (pip --no-index).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: install common + client + gateway into a virtual environment with the same script CI runs.
FROM ${PYTHON_IMAGE} AS build
# The same title on both stages, so old builds can be pruned by it (tests/support/docker_engine.py).
LABEL org.opencontainers.image.title="tsva-gateway"
WORKDIR /src
COPY scripts/install.sh scripts/install.sh
COPY requirements/ requirements/
COPY common/ common/
COPY clients/ clients/
COPY server/ server/
RUN if ls requirements/wheelhouse/*.whl >/dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/requirements/wheelhouse; \
      echo "installing from the wheelhouse (no index)"; \
    fi \
 && scripts/install.sh image /opt/venv

# Stage 2: the runtime, without build leftovers, source trees or wheels.
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tsva-gateway" \
      org.opencontainers.image.description="Two-shot virtual autofocus gRPC gateway"
# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 tsva \
 && useradd --system --uid 10001 --gid tsva --no-create-home --shell /usr/sbin/nologin tsva
COPY --from=build /opt/venv /opt/venv
COPY model_repository/ /opt/tsva/model_repository/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TSVA_MODEL_REPOSITORY=/opt/tsva/model_repository \
    TSVA_HEALTHCHECK_SERVER=localhost:50051
USER 10001:10001
# gRPC API, Prometheus metrics (/metrics)
EXPOSE 50051 9464
# grpc.health.v1 SERVING means the backend can take work; TLS options via TSVA_HEALTHCHECK_TLS_*.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "tsva.client.healthcheck"]
# SIGTERM drains in-flight work for up to --grace-s (20 s): give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tsva"]
CMD ["serve"]
