#!/usr/bin/env bash
# ghz, the gRPC load tool (https://ghz.sh), for bench/lease_path.py's single-RPC runs.
#
#   deploy/local/ghz.sh [build]   go-install it from the Go module proxy into .cache/bin/ghz (skipped when the
#                                 cached binary has the wanted version) and print its path
#
# Env: GHZ_VERSION (v0.120.0), LABELMESH_CACHE (<repo>/.cache).
set -euo pipefail
COMPONENT=ghz
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GHZ_VERSION="${GHZ_VERSION:-v0.120.0}"
BIN="$CACHE_DIR/bin/ghz"
BIN_STAMP="$CACHE_DIR/bin/ghz.version"

if [[ ! -x "$BIN" || "$(cat "$BIN_STAMP" 2>/dev/null)" != "$GHZ_VERSION" ]]; then
  mkdir -p "$CACHE_DIR/bin"
  GOBIN="$CACHE_DIR/bin" CGO_ENABLED=0 go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION" >&2
  echo "$GHZ_VERSION" > "$BIN_STAMP"
fi
echo "$BIN"
