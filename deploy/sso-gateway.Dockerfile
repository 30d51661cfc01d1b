# syntax=docker/dockerfile:1.7
# sso-gateway: Log in with Clever for RocketLit and InnerOrbit, an OpenID Connect provider to their frontends.
# Build from the repository root:
#   docker build -f deploy/sso-gateway.Dockerfile -t sso-gateway .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY shared/src shared/src
COPY services/sso-gateway/pyproject.toml services/sso-gateway/pyproject.toml
COPY services/sso-gateway/src services/sso-gateway/src
RUN /opt/venv/bin/pip install -c constraints.txt ./shared ./services/sso-gateway

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10002 sso \
    && useradd --system --uid 10002 --gid sso --home-dir /var/lib/sso-gateway --create-home sso
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SSO_ENVIRONMENT=production \
    SSO_HOST=0.0.0.0 \
    SSO_PORT=8100 \
    SSO_DATA_DIR=/var/lib/sso-gateway
USER 10002:10002
WORKDIR /var/lib/sso-gateway
# Only the SQLite session store lives here; replicas use Redis (SSO_REDIS_URL) and need no volume.
VOLUME ["/var/lib/sso-gateway"]
EXPOSE 8100
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 CMD ["python", "/opt/healthcheck.py"]
ENTRYPOINT ["sso-gateway"]
CMD ["serve"]
