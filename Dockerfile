# syntax=docker/dockerfile:1
# emp-job-queue machine images. Build one stage with --target:
#   docker build --target simulation -t emp-job-queue:simulation .
#   docker build --target comfyui    -t emp-job-queue:comfyui .
#   docker build --target ollama     -t emp-job-queue:ollama .
#   docker build --target api        -t emp-job-queue:api .
# Every stage but api runs `emp machine` (see docs/deploy.md); WORKERS chooses the worker processes.

# base: Python and the emp package in a venv the emp user owns, so that custom nodes'
# requirements (installed at boot by the component manager) need no root.
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    EMP_LOG_JSON=1 \
    EMP_HEALTH_PORT=9090
# git: the component manager clones custom nodes; tini: PID 1 that forwards SIGTERM to the
# agent (preemption) and reaps orphaned grandchildren.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin emp \
    && python -m venv /opt/venv \
    && install -d -o emp -g emp /opt/emp \
    && chown -R emp:emp /opt/venv
WORKDIR /opt/emp
COPY --chown=1000:1000 pyproject.toml README.md ./
COPY --chown=1000:1000 src ./src
USER 1000:1000
RUN pip install --no-cache-dir "/opt/emp[server]"
WORKDIR /home/emp
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/health', timeout=4)"]
STOPSIGNAL SIGTERM
# With EMP_ENV_KEY set (a secret of the machine), `emp machine` first loads the encrypted env
# bundle from `emp env pack` at EMP_ENV_BUNDLE (default /etc/emp/env.enc: mount it, or COPY it
# in an image of your own); variables set on the container win over the bundle's.
ENTRYPOINT ["tini", "--", "emp", "machine"]

# api: the REST/WebSocket API and the monitor (`emp api`), for Kubernetes (deploy/kubernetes/)
# and compose. No GPU; the machine health check of base does not apply.
FROM base AS api
ENV EMP_API_HOST=0.0.0.0 \
    EMP_API_PORT=3331
EXPOSE 3331
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3331/health', timeout=4)"]
ENTRYPOINT ["tini", "--", "emp", "api"]

# comfyui: ComfyUI at a pinned release with CUDA PyTorch; one instance per GPU.
FROM base AS comfyui
ARG COMFYUI_REF=v0.3.27
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124
USER 0:0
RUN git clone --depth 1 --branch "${COMFYUI_REF}" https://github.com/comfyanonymous/ComfyUI.git /opt/ComfyUI \
    && chown -R emp:emp /opt/ComfyUI
USER 1000:1000
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        torch==2.6.0 torchvision==0.21.0 torchaudio==2.6.0 \
    && pip install --no-cache-dir -r /opt/ComfyUI/requirements.txt
ENV WORKERS=comfyui:auto \
    EMP_COMFYUI_DIR=/opt/ComfyUI \
    EMP_COMPONENTS_NODES_DIR=/opt/ComfyUI/custom_nodes \
    EMP_COMPONENTS_MODELS_DIR=/opt/ComfyUI/models
EXPOSE 8188

# ollama: the ollama binary and its GPU runners, copied from the pinned official image.
FROM base AS ollama
COPY --from=ollama/ollama:0.6.5 /usr/bin/ollama /usr/bin/ollama
COPY --from=ollama/ollama:0.6.5 /usr/lib/ollama /usr/lib/ollama
ENV WORKERS=ollama:1 \
    OLLAMA_MODELS=/home/emp/.ollama/models
EXPOSE 11434

# simulation: no GPU and no real service; the agent runs the protocol fakes (tests, demos,
# load tests of the broker).
FROM base AS simulation
ENV WORKERS=simulation:2,comfyui:1 \
    EMP_MACHINE_SERVICES=fake \
    EMP_GPU_MODE=mock \
    EMP_MOCK_GPUS=1
