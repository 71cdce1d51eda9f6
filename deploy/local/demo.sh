#!/usr/bin/env bash
# The demo: installs, starts Kafka and FerretDB, runs `labelmesh demo` (extra arguments go to it), stops them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash deploy/local/install.sh
export PYTHON="$ROOT/.venv/bin/python" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
bash deploy/local/up.sh
trap 'bash deploy/local/down.sh' EXIT
.venv/bin/labelmesh demo "$@"
