#!/usr/bin/env bash
# Install everything and run the whole suite: lint, format, types, import contracts, tests.
# Needs PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379); under CI=true a
# test that cannot reach them fails instead of skipping. Extra arguments go to pytest.
# `scripts/test.sh --quick` leaves out the slowest differential fits (pytest -m "not slow").
# Tests run in TEST_WORKERS processes (default: twice the CPU count, at most 4: many tests wait
# on servers, workers and timers, and a second process a core fills that time), a test module
# to a process (pytest-xdist, --dist loadfile), so a module's fixtures are set up once. The
# differential fits on the baseline kernels, which only compute, run in one process a core.
set -euo pipefail
marks=()
fit_marks="differential and fit"
if [[ "${1:-}" == "--quick" ]]; then
    shift
    marks=(-m "not slow")
    fit_marks="differential and fit and not slow"
fi
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/browser.sh
. .venv/bin/activate
echo "== ruff"; ruff check . && ruff format --check .
echo "== import-linter"; lint-imports
# mypy runs beside the tests (they often wait on servers and timers); its report follows theirs.
mypy_log="$(mktemp)"
mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
# The first pass lists the files that hold differential fits (tests/conftest.py), so the second
# collects only those.
fit_list="$(mktemp)"
trap 'kill "$mypy_pid" 2>/dev/null || true; rm -f "$mypy_log" "$fit_list"' EXIT
workers="${TEST_WORKERS:-$(python -c 'import os; print(min(4, 2 * (os.cpu_count() or 1)))')}"
fit_workers="${TEST_WORKERS:-$(python -c 'import os; print(min(4, os.cpu_count() or 1))')}"
parallel=(-n "$workers" --dist loadfile)
echo "== pytest ($workers processes; the 15 slowest tests are listed at the end)"
tests_status=0
FITAPI_FIT_MODULES_FILE="$fit_list" \
    python -m pytest -q -p no:cacheprovider --durations=15 "${parallel[@]}" "${marks[@]}" "$@" ||
    tests_status=$?
echo "== mypy"
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
cat "$mypy_log"
# Both reports are shown before either failure ends the run.
if [ "$tests_status" != 0 ] || [ "$mypy_status" != 0 ]; then
    exit 1
fi
# The differential fits again on torch's baseline (non-vectorised) kernels: their tolerances must
# hold whatever order a CPU's kernels sum in (CONTRIBUTING.md, "Tolerance policy").
echo "== pytest: differential fits on the baseline kernels (ATEN_CPU_CAPABILITY=default)"
fit_files=()
if [ $# -eq 0 ] && [ -s "$fit_list" ]; then
    mapfile -t fit_files <"$fit_list"
fi
ATEN_CPU_CAPABILITY=default python -m pytest -q -p no:cacheprovider -n "$fit_workers" --dist loadfile \
    -m "$fit_marks" \
    "${fit_files[@]}" "$@"
