#!/usr/bin/env bash
# The test suite: installs what it needs, starts Kafka and FerretDB, runs unit, integration and e2e tests, stops them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash deploy/local/install.sh
# The deploy tests' tools (cached in .cache/ after the first run): promtool + prometheus, kustomize, deploy/check.
bash deploy/local/prometheus.sh fetch
bash deploy/local/kustomize.sh fetch
bash deploy/local/deploycheck.sh fetch
# Label Studio for tests/e2e/test_label_studio.py, in a virtualenv of its own (cached in .cache/ after the first run).
bash deploy/local/label-studio.sh install
export PYTHON="$ROOT/.venv/bin/python" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
started=0
if [ "${LABELMESH_KEEP_INFRA:-0}" != "1" ] || ! bash deploy/local/kafka.sh status >/dev/null 2>&1; then
  bash deploy/local/up.sh
  started=1
fi
cleanup() { if [ "$started" = 1 ] && [ "${LABELMESH_KEEP_INFRA:-0}" != "1" ]; then bash deploy/local/down.sh; fi; }
trap cleanup EXIT
"$PYTHON" -m pytest -p no:cacheprovider "$@"
