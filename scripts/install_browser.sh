#!/usr/bin/env bash
# Headless Chromium (Debian's package) and Playwright's Python client, for tests/test_serve_browser.py.
# Idempotent and quiet: does nothing when both are already there. Never runs `playwright install`
# (that downloads a browser build; we drive the system Chromium at /usr/bin/chromium instead).
# Usage: scripts/install_browser.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${1:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! "$PY" -c "import playwright" >/dev/null 2>&1; then
    "$PY" -m pip install -q playwright >/dev/null
fi

/usr/bin/chromium --version >/dev/null 2>&1
"$PY" -c "import playwright.sync_api" >/dev/null
