#!/usr/bin/env bash
# Install everything and run the whole suite: lint, format, types, import contracts, tests.
# Needs PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379); under CI=true a
# test that cannot reach them fails instead of skipping. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
. .venv/bin/activate
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== import-linter"; lint-imports
echo "== pytest"; python -m pytest -q -p no:cacheprovider "$@"
