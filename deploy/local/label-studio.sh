#!/usr/bin/env bash
# Label Studio (from PyPI) in a virtualenv of its own, so its pins (Django, pydantic, ...) never meet labelmesh's.
#   bash deploy/local/label-studio.sh install   creates .cache/label-studio-venv and installs label-studio (cached:
#                                               a second run installs nothing)
#   bash deploy/local/label-studio.sh path      prints the label-studio executable
#   bash deploy/local/label-studio.sh python    prints the virtualenv's python: `$(... python) -m label_studio.server
#                                               start` works even where the virtualenv was made under another path
#                                               (a worktree's .cache linked to another's), which the executable's
#                                               #! line does not
# LABEL_STUDIO_VERSION pins the release (default below); LABEL_STUDIO_VENV moves the virtualenv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"
VENV="${LABEL_STUDIO_VENV:-$ROOT/.cache/label-studio-venv}"
stamp="$VENV/.label-studio-$VERSION-sentry2"

case "${1:-install}" in
  install)
    if [ -f "$stamp" ] && "$VENV/bin/python" -c "import label_studio" 2>/dev/null; then
      echo "label-studio: $VENV has $VERSION"
      exit 0
    fi
    start=$(date +%s)
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # sentry-sdk 3 dropped the `send_default_pii` option that label-studio 1.23.2 passes at start ("Unknown option").
    "$VENV/bin/python" -m pip install -q "label-studio==$VERSION" "sentry-sdk>=2,<3"
    touch "$stamp"
    echo "label-studio: installed $VERSION into $VENV in $(( $(date +%s) - start )) s"
    ;;
  path)
    echo "$VENV/bin/label-studio"
    ;;
  python)
    echo "$VENV/bin/python"
    ;;
  *)
    echo "usage: $0 install|path|python" >&2
    exit 2
    ;;
esac
