#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (apt package `chromium`) through Playwright; Playwright's
# own browser download is never used. Installs it when it is missing and this user may run apt-get.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  apt_get=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt_get=(sudo -n apt-get)
else
  echo "Chromium is missing and apt-get needs root: run 'apt-get install chromium' once;" \
    "the browser tests fail under CI=true and skip otherwise." >&2
  exit 0
fi
echo "installing Debian's chromium for the browser tests"
export DEBIAN_FRONTEND=noninteractive
"${apt_get[@]}" install -y -q --no-install-recommends chromium >/dev/null \
  || { "${apt_get[@]}" update -q >/dev/null && "${apt_get[@]}" install -y -q --no-install-recommends chromium >/dev/null; }
