#!/usr/bin/env bash
# The test command (README). On a fresh machine: installs and starts the real services
# (when run as root), installs ImageTrail with its test extras in .venv, runs ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) == 0 ]]; then
  bash scripts/start-services.sh
else
  echo "[test] not root: services are not installed or started; tests that need them are skipped"
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[server,test]'
if [[ -f package.json ]]; then npm ci --no-fund --no-audit --silent; fi

# Lint first (the rule set is in pyproject.toml [tool.ruff.lint]); it takes about a second.
.venv/bin/ruff check src tests benchmarks package_tools
exec .venv/bin/python -m pytest "$@"
