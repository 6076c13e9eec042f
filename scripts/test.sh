#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the whole suite.
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${HPCGAN_VENV:-.venv}
exec "$VENV/bin/python" -m pytest -ra "$@"
