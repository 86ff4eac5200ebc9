# syntax=docker/dockerfile:1
# The TSVA gateway: `tsva serve` with the embedded ONNX Runtime backend and the shipped model, or
# `tsva serve --backend triton --triton-urls HOST:8001` in front of Triton. No torch in this image.
#   docker build -t tsva-gateway .
#   docker run --rm -p 50051:50051 -p 9464:9464 tsva-gateway
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: install client + gateway into a virtual environment with the same script CI runs.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY scripts/install.sh scripts/install.sh
COPY requirements/ requirements/
COPY clients/ clients/
COPY server/ server/
RUN scripts/install.sh image /opt/venv

# Stage 2: the runtime, without build leftovers or source trees.
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
    TSVA_MODEL_PATH=/opt/tsva/model_repository/tsva/1/model.onnx \
    TSVA_HEALTHCHECK_SERVER=localhost:50051
USER 10001:10001
# gRPC API, Prometheus metrics (/metrics)
EXPOSE 50051 9464
# grpc.health.v1 SERVING means the backend can take work; TLS options via TSVA_HEALTHCHECK_TLS_*.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "tsva.client.healthcheck"]
ENTRYPOINT ["tsva"]
CMD ["serve"]
