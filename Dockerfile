# lrr-service image: a virtual environment built in one stage, copied into a slim runtime stage.
# Another base can be given at build time (it must provide python3 with venv and pip):
#   docker build --build-arg BASE_IMAGE=python:3.12-slim -t lrr-service .
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS builder
# The label lets `make container-test` prune this project's superseded images and nothing else.
LABEL org.opencontainers.image.title="lrr-service"
# Optional package index settings for networks that need them (nothing is hard-coded here).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180
RUN python3 -m venv /opt/lrr/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so that a source change reuses this layer.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/lrr/venv/bin/pip install --no-cache-dir -r requirements.txt
COPY . ./
# -P: import from the installed wheel, not from /src, to prove the wheel holds the packages.
RUN /opt/lrr/venv/bin/pip install --no-cache-dir --no-deps . \
 && /opt/lrr/venv/bin/python -P -c "import lrr_service.core.engine, lrr_service.service.__main__"

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="lrr-service" \
      org.opencontainers.image.description="Real-time Linear Regression Rereferencing (LRR) websocket service"
# A fixed numeric uid, so that volume ownership and `runAsNonRoot` checks are predictable.
RUN groupadd --system --gid 10001 lrr \
 && useradd --uid 10001 --gid lrr --home-dir /var/lib/lrr --no-create-home --shell /usr/sbin/nologin lrr \
 && mkdir -p /var/lib/lrr \
 && chown lrr:lrr /var/lib/lrr \
 && chmod 0750 /var/lib/lrr
COPY --from=builder /opt/lrr/venv /opt/lrr/venv
ENV PATH=/opt/lrr/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LRR_HOST=0.0.0.0 \
    LRR_PORT=8000 \
    LRR_STATE_DIR=/var/lib/lrr
WORKDIR /opt/lrr
USER 10001:10001
VOLUME /var/lib/lrr
EXPOSE 8000
# Shell form on purpose: podman's Docker API mangles exec-form healthchecks. No curl needed.
# hadolint ignore=DL3025
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LRR_PORT', '8000'), timeout=2)" || exit 1
# Exec form: the server is PID 1 and receives SIGTERM itself, so `docker stop` checkpoints every session.
# Host, port and everything else come from the LRR_ environment (flags would override it).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "lrr_service.service", "serve"]
