# Production image: `docker build -t app .` then
#   docker run -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=... -e REDIS_URL=... app
# The same image runs the other processes: `app worker`, `app scheduler`,
# `app migrate upgrade head` (give those `--no-healthcheck`: they serve no HTTP).
# tests/test_containers.py checks this file statically.

# ---- builder: resolve nothing, install exactly the hash-pinned runtime lock ----
FROM python:3.11-slim-bookworm AS builder

# The uv version the dev lock pins for `make install` (a test keeps them equal).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never

RUN uv venv --python /usr/local/bin/python3 /opt/venv

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when the lock changes.
COPY requirements/base.txt requirements/base.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip sync --python /opt/venv/bin/python --require-hashes requirements/base.txt

# Then the project itself, without dependencies. Editable on purpose: the `app` command finds
# alembic.ini and migrations/ next to the package (PROJECT_ROOT in app/cli.py), so the code
# must stay at /app rather than move into site-packages. docker-compose.yaml mounts the
# working tree's code over /app/app for reload in development.
COPY pyproject.toml README.md alembic.ini ./
COPY migrations migrations
COPY app app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --no-deps --editable . \
    && /opt/venv/bin/python -m compileall -q app migrations

# ---- runtime: Python, the virtualenv and the code; no uv, no compilers, no dev tools ----
FROM python:3.11-slim-bookworm AS runtime

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_ENV=production \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000

WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it. The code stays root-owned: read-only.
USER 10001:10001

EXPOSE 8000

# slim has no curl: standard-library Python instead, bypassing any HTTP(S)_PROXY in the env.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as r; url = 'http://127.0.0.1:' + os.environ.get('SERVER_PORT', '8000') + '/health/live'; sys.exit(0 if r.build_opener(r.ProxyHandler({})).open(url, timeout=4).status == 200 else 1)"]

CMD ["app", "serve"]
