#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package, unpacked into .cache/ (no root, no service installed).
#
#   deploy/local/prometheus.sh fetch           download the .deb once (apt-get download) and unpack it
#   deploy/local/prometheus.sh path NAME       print the path of `prometheus` or `promtool` (fetches if needed)
#
# Used by the deploy tests (promtool check/test rules, a real Prometheus scraping a service). A second run
# downloads nothing. Env: PROMETHEUS_DEB_VERSION (empty: apt's candidate), LABELMESH_CACHE (<repo>/.cache).
set -euo pipefail
COMPONENT=prometheus
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WANT="${PROMETHEUS_DEB_VERSION:-}"
BASE="$CACHE_DIR/prometheus"
CURRENT="$BASE/current"   # names the unpacked version in use

unpacked_dir() {
  local v
  if [[ -n "$WANT" ]]; then v="$WANT"; else v="$(cat "$CURRENT" 2>/dev/null)" || return 1; fi
  [[ -x "$BASE/$v/usr/bin/promtool" && -x "$BASE/$v/usr/bin/prometheus" ]] || return 1
  printf '%s\n' "$BASE/$v"
}

cmd_fetch() {
  local dir
  if dir="$(unpacked_dir)"; then
    log "using cached $dir"
    return 0
  fi
  command -v apt-get >/dev/null || die "apt-get is not on PATH; promtool comes from Debian's prometheus package"
  local t0 tmp pkg deb version
  t0="$(now_s)"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  chmod 755 "$tmp"   # apt's download sandbox user must be able to write there
  pkg="prometheus${WANT:+=$WANT}"
  log "downloading Debian's $pkg"
  if ! (cd "$tmp" && apt-get download -q "$pkg" >"$tmp/apt.log" 2>&1); then
    log "apt-get download failed; refreshing the package lists once (apt-get update)"
    apt-get update -q >"$tmp/update.log" 2>&1 || { cat "$tmp/update.log" >&2; die "apt-get update failed"; }
    (cd "$tmp" && apt-get download -q "$pkg" >"$tmp/apt.log" 2>&1) || { cat "$tmp/apt.log" >&2; die "apt-get download $pkg failed"; }
  fi
  deb="$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' | head -1)"
  [[ -n "$deb" ]] || die "no prometheus .deb after apt-get download"
  version="$(dpkg-deb -f "$deb" Version)"
  mkdir -p "$BASE"
  rm -rf "$BASE/$version.tmp"
  dpkg-deb -x "$deb" "$BASE/$version.tmp"
  "$BASE/$version.tmp/usr/bin/promtool" --version >/dev/null 2>&1 || die "the unpacked promtool does not run"
  rm -rf "${BASE:?}/$version"
  mv "$BASE/$version.tmp" "$BASE/$version"
  printf '%s\n' "$version" >"$CURRENT"
  log "unpacked prometheus $version into $BASE/$version ($(du -sh "$BASE/$version" | cut -f1)) in $(elapsed "$t0")"
}

cmd_path() {
  local name="${1:-}" dir
  [[ "$name" == prometheus || "$name" == promtool ]] || die "usage: prometheus.sh path {prometheus|promtool}"
  dir="$(unpacked_dir)" || { cmd_fetch >&2; dir="$(unpacked_dir)"; }
  printf '%s\n' "$dir/usr/bin/$name"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  path) shift; cmd_path "$@" ;;
  *) echo "usage: $0 {fetch|path prometheus|path promtool}" >&2; exit 2 ;;
esac
