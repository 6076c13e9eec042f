#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the whole suite.
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# --- test-only system package: the headless browser tests/experiment/test_report_html.py opens report.html in
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "[test] apt-get install chromium (headless browser for the report test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
  else
    echo "[test] chromium is missing (run as root or ask your admin: apt-get install chromium);" \
         "the report's browser test fails under CI=true without it" >&2
  fi
fi
VENV=${HPCGAN_VENV:-.venv}
echo "[test] ruff check . (settings: pyproject.toml)"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -ra "$@"
