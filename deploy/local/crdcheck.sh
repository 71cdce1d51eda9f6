#!/usr/bin/env bash
# deploy/k8s/crdcheck: strict decoding of the rendered ServiceMonitor and PrometheusRule into the Prometheus
# Operator's own Go types (no CRD schema is available offline). Built from the Go module proxy into .cache/.
#
#   deploy/local/crdcheck.sh fetch    build once per source version (go.mod, go.sum, main.go)
#   deploy/local/crdcheck.sh path     print the binary's path (builds it if needed)
set -euo pipefail
COMPONENT=crdcheck
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$REPO_ROOT/deploy/k8s/crdcheck"
VERSION="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
DIR="$CACHE_DIR/crdcheck/$VERSION"
BIN="$DIR/crdcheck"

cmd_fetch() {
  if [[ -x "$BIN" ]]; then
    log "using cached $BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build crdcheck"
  local t0
  t0="$(now_s)"
  mkdir -p "$DIR"
  log "building deploy/k8s/crdcheck with $(go version | awk '{print $3}') (first time downloads the Prometheus Operator's API module)"
  (cd "$SRC" && go build -trimpath -ldflags="-s -w" -o "$BIN.tmp.$$" .) || { rm -f "$BIN.tmp.$$"; die "go build of crdcheck failed"; }
  mv -f "$BIN.tmp.$$" "$BIN"
  log "built $BIN in $(elapsed "$t0")"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  path) [[ -x "$BIN" ]] || cmd_fetch >&2; printf '%s\n' "$BIN" ;;
  *) echo "usage: $0 {fetch|path}" >&2; exit 2 ;;
esac
