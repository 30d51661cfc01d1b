# syntax=docker/dockerfile:1.7
# One image for every roster-api process: `serve` (default), `worker`, `sftp`, `nightly`, `migrate`.
# Build from the repository root:
#   docker build -f deploy/roster-api.Dockerfile -t roster-api .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Pins first so that a code change does not re-resolve dependencies.
COPY constraints.txt ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY shared/src shared/src
COPY services/roster-api/pyproject.toml services/roster-api/pyproject.toml
COPY services/roster-api/src services/roster-api/src
RUN /opt/venv/bin/pip install -c constraints.txt ./shared ./services/roster-api

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it and volume permissions are predictable.
RUN groupadd --system --gid 10001 roster \
    && useradd --system --uid 10001 --gid roster --home-dir /var/lib/roster --create-home roster
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ROSTER_ENVIRONMENT=production \
    ROSTER_HOST=0.0.0.0 \
    ROSTER_PORT=8000 \
    ROSTER_SFTP_HOST=0.0.0.0 \
    ROSTER_SFTP_PORT=2222 \
    ROSTER_DATA_DIR=/var/lib/roster
USER 10001:10001
WORKDIR /var/lib/roster
# Uploads, results and the SFTP host key live here; share it between api, worker, sftp and nightly.
VOLUME ["/var/lib/roster"]
EXPOSE 8000 2222
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["python", "/opt/healthcheck.py"]
ENTRYPOINT ["roster-api"]
CMD ["serve"]
