#!/usr/bin/env bash
# Install and start the service on its embedded default: a SQLite file and artifacts under
# ./data and an in-process job executor. Set DATABASE_URL and REDIS_URL for the distributed mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m uvicorn app.main:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
  --timeout-graceful-shutdown 10
