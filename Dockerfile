# syntax=docker/dockerfile:1
# authproxy as a sidecar: `docker build -t authproxy .`; see README.md ("Docker sidecar").
# tests/test_docker.py replays the install steps below in a fresh virtualenv and starts the
# entrypoint against config.example.yaml, so keep them plain `python`/`pip` commands.

ARG PYTHON_VERSION=3.12

# -- build: the package and every dependency as wheels ------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY authproxy ./authproxy
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels '.[fast,metrics,redis]'

# -- runtime: slim Python, no compilers, no build tools, non-root -------------------------------
FROM python:${PYTHON_VERSION}-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/authproxy/bin:$PATH \
    AUTHPROXY_LISTEN=0.0.0.0:8080 \
    XDG_STATE_HOME=/var/lib

# Only the wheels built above (--no-index); the wheel directory is mounted, never copied in.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/authproxy \
    && /opt/authproxy/bin/pip install --no-cache-dir --no-index --find-links /wheels 'authproxy[fast,metrics,redis]'

# Token state (logins, refresh tokens) lives in a volume, so the root filesystem can be read-only.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/authproxy --no-create-home authproxy \
    && mkdir -p /var/lib/authproxy /etc/authproxy \
    && chown authproxy:authproxy /var/lib/authproxy \
    && chmod 0700 /var/lib/authproxy
COPY config.example.yaml /etc/authproxy/config.yaml
VOLUME ["/var/lib/authproxy"]

USER 10001:10001
WORKDIR /var/lib/authproxy
EXPOSE 8080
# The probe reads the config `run` reads: its port, `tls:` (https) and `admin.listen` (where /-/health is).
# docker-compose.yml runs the same command; mount your config elsewhere? Pass its path to both.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-m", "authproxy.server.healthcheck", "-c", "/etc/authproxy/config.yaml"]
ENTRYPOINT ["authproxy"]
CMD ["run", "-c", "/etc/authproxy/config.yaml"]
