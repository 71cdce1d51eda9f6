#!/usr/bin/env bash
# Creates .venv and installs labelmesh with its test extras; a second run installs nothing new.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ ! -x .venv/bin/python ]; then
  echo "install: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.labelmesh-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "install: pip install -e '.[dev]' (first run downloads about 3 GB: torch with its CUDA libraries)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
else
  echo "install: .venv is current"
fi
