# One image for the API, the migration job and the workers.
# TORCH_INDEX picks the torch build: the CPU wheels by default; pass a CUDA index for GPU workers.
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The image listens on every interface: it never runs single-user (keys from app.admin).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data AUTH_REQUIRED=true
WORKDIR /srv
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch>=2.4,<2.15"
COPY pyproject.toml alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir .
RUN useradd --create-home fitapi && mkdir -p /data && chown fitapi /data
USER fitapi
EXPOSE 8000
CMD ["python", "-m", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "10"]
