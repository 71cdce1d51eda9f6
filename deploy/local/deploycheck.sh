#!/usr/bin/env bash
# deploy/check: validates deployment files with the libraries their consumers use, offline (see its main.go):
# the Prometheus Operator's Go types for ServiceMonitor/PrometheusRule, compose-go for docker-compose.yml.
# Built from the Go module proxy into .cache/.
#
#   deploy/local/deploycheck.sh fetch    build once per source version (go.mod, go.sum, main.go)
#   deploy/local/deploycheck.sh path     print the binary's path (builds it if needed)
set -euo pipefail
COMPONENT=deploycheck
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$REPO_ROOT/deploy/check"
VERSION="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
DIR="$CACHE_DIR/deploycheck/$VERSION"
BIN="$DIR/check"

cmd_fetch() {
  if [[ -x "$BIN" ]]; then
    log "using cached $BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build deploy/check"
  local t0
  t0="$(now_s)"
  mkdir -p "$DIR"
  log "building deploy/check with $(go version | awk '{print $3}') (the first time downloads its modules)"
  (cd "$SRC" && go build -trimpath -ldflags="-s -w" -o "$BIN.tmp.$$" .) || { rm -f "$BIN.tmp.$$"; die "go build of deploy/check failed"; }
  mv -f "$BIN.tmp.$$" "$BIN"
  log "built $BIN in $(elapsed "$t0")"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  path) [[ -x "$BIN" ]] || cmd_fetch >&2; printf '%s\n' "$BIN" ;;
  *) echo "usage: $0 {fetch|path}" >&2; exit 2 ;;
esac
