# One image for the API, the migration job and the workers.
# TORCH_VARIANT picks the torch build from https://download.pytorch.org/whl/<variant>: `cpu`
# (the default) or a CUDA build such as `cu128` for GPU workers (docker-compose.gpu.yml).
FROM python:3.11-slim
ARG TORCH_VARIANT=cpu
# The image listens on every interface: it never runs single-user (keys from app.admin).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data AUTH_REQUIRED=true
WORKDIR /srv
# Dependencies first, each layer rebuilt only when what it reads changes: torch (the variant),
# then the project's dependencies read from pyproject.toml alone. A code change rebuilds only
# the layers below them.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
    "torch>=2.4,<2.15"
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY alembic.ini ./
COPY migrations ./migrations
COPY workers ./workers
COPY app ./app
RUN pip install --no-deps . \
    && useradd --create-home fitapi && mkdir -p /data && chown fitapi /data
USER fitapi
EXPOSE 8000
# Liveness of the API (slim has no curl). The worker and migrate services override it in
# docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "10"]
