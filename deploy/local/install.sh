#!/usr/bin/env bash
# Creates .venv and installs labelmesh with its test extras; a second run installs nothing new.
#
# The container image's build runs this same script with other settings (deploy/docker/Dockerfile):
#   LABELMESH_VENV       where the virtualenv goes (default <repo>/.venv)
#   LABELMESH_EDITABLE   1 (default): pip install -e, for development; 0: a plain install, for images
#   LABELMESH_EXTRAS     optional-dependency groups (default "dev"; empty installs only what services need)
#   LABELMESH_TORCH_INDEX_URL  a pip index to take torch from before anything else (e.g. PyTorch's CPU-only
#                        wheel index, which drops the ~3 GB of CUDA libraries); empty (default): torch from PyPI
#   LABELMESH_INSTALL_DRY_RUN  1: print the pip commands instead of running them
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${LABELMESH_VENV:-.venv}"
EDITABLE="${LABELMESH_EDITABLE:-1}"
EXTRAS="${LABELMESH_EXTRAS-dev}"
TORCH_INDEX_URL="${LABELMESH_TORCH_INDEX_URL:-}"
DRY_RUN="${LABELMESH_INSTALL_DRY_RUN:-0}"

spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
[ "$EDITABLE" = 1 ] && spec="-e $spec"

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "install: creating $VENV"
  run python3 -m venv "$VENV"
fi
stamp="$VENV/.labelmesh-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$DRY_RUN" = 1 ]; then
  echo "install: pip install $spec (first run downloads about 3 GB: torch with its CUDA libraries)"
  run "$VENV/bin/python" -m pip install -q --upgrade pip
  if [ -n "$TORCH_INDEX_URL" ]; then
    run "$VENV/bin/python" -m pip install -q torch --index-url "$TORCH_INDEX_URL"
  fi
  # shellcheck disable=SC2086  # $spec is "-e .[dev]" or ".": two words or one, on purpose
  run "$VENV/bin/python" -m pip install -q $spec
  [ "$DRY_RUN" = 1 ] || touch "$stamp"
else
  echo "install: $VENV is current"
fi
