#!/usr/bin/env bash
# kustomize, built from the Go module proxy into .cache/ (the tests render deploy/k8s overlays with it).
#
#   deploy/local/kustomize.sh fetch     go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION once
#   deploy/local/kustomize.sh path      print the binary's path (builds it if needed)
#
# Env: KUSTOMIZE_VERSION (v5.8.0), LABELMESH_CACHE (<repo>/.cache). A second run builds nothing.
set -euo pipefail
COMPONENT=kustomize
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.0}"
DIR="$CACHE_DIR/kustomize/$KUSTOMIZE_VERSION"
BIN="$DIR/kustomize"

cmd_fetch() {
  if [[ -x "$BIN" ]]; then
    log "using cached $BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build kustomize"
  local t0
  t0="$(now_s)"
  mkdir -p "$DIR"
  log "building sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION with $(go version | awk '{print $3}')"
  GOBIN="$DIR.tmp.$$" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" \
    || { rm -rf "$DIR.tmp.$$"; die "go install of kustomize $KUSTOMIZE_VERSION failed (see above)"; }
  mv -f "$DIR.tmp.$$/kustomize" "$BIN"
  rm -rf "$DIR.tmp.$$"
  log "built $BIN ($(du -h "$BIN" | cut -f1)) in $(elapsed "$t0")"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  path) [[ -x "$BIN" ]] || cmd_fetch >&2; printf '%s\n' "$BIN" ;;
  *) echo "usage: $0 {fetch|path}" >&2; exit 2 ;;
esac
