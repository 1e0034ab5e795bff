#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project. Usage: scripts/setup.sh [extras], e.g.
# "test". pip runs only when pyproject.toml, a lock file, the Python version or the extras asked
# for changed since the last install: .venv/.fitapi-install records them (a stamp), so a later
# start costs no pip run at all. Extras installed once stay installed.
# Without an NVIDIA GPU, the CPU build of torch is installed first, so the project's torch range
# is already satisfied and no multi-GB CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "fitapi needs Python 3.11; $PYTHON is $("$PYTHON" -V 2>&1 || echo missing)." \
      "Set PYTHON to a python3.11 executable." >&2
    exit 1
  fi
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.fitapi-install

# What the installed environment depends on: the Python build and the dependency files.
inputs="$(.venv/bin/python - <<'EOF'
import hashlib
import pathlib
import sys

digest = hashlib.sha256(sys.version.encode())
root = pathlib.Path(".")
files = {root / "pyproject.toml", root / "client" / "pyproject.toml", *root.glob("*.lock"), *root.glob("pylock*.toml"),
         *root.glob("requirements*.txt")}
for path in sorted(p for p in files if p.is_file()):
    digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
print(digest.hexdigest())
EOF
)"

# A comma-separated list of extras, one a line, sorted and without duplicates.
extras_lines() { tr ',' '\n' <<<"$1" | tr -d ' ' | sed '/^$/d' | sort -u; }

installed_inputs=""
installed_extras=""
if [ -f "$STAMP" ]; then
  installed_inputs="$(sed -n 's/^inputs //p' "$STAMP")"
  installed_extras="$(sed -n 's/^extras //p' "$STAMP")"
fi
missing="$(comm -23 <(extras_lines "$extras") <(extras_lines "$installed_extras"))"
if [ "$inputs" = "$installed_inputs" ] && [ -z "$missing" ]; then
  exit 0
fi

# Keep what an earlier run installed: `serve` after `test` must not drop the test tools.
all_extras="$(extras_lines "$installed_extras,$extras" | paste -sd, -)"
echo "installing fitapi${all_extras:+[$all_extras]} and its dependencies into .venv" \
  "(the first install downloads torch and takes a few minutes)"
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install "torch>=2.4,<2.15"
  else
    python -m pip install "torch==2.13.0" \
      || python -m pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
  fi
fi
if [ -n "$all_extras" ]; then
  python -m pip install -e ".[$all_extras]"
else
  python -m pip install -e .
fi
if grep -qx test <(extras_lines "$all_extras"); then
  # The tests drive the Python client and its command line (client/, its own distribution).
  python -m pip install -e "./client[cli]"
fi
printf 'inputs %s\nextras %s\n' "$inputs" "$all_extras" >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
