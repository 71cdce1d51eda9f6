# shellcheck shell=bash
# Shared helpers for the local infrastructure scripts. Source it; do not run it.
#
# Everything is resolved from this file's location so the scripts work from any
# cwd and from any git worktree.

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
VAR_DIR="${LABELMESH_VAR:-$REPO_ROOT/var}"
CACHE_DIR="${LABELMESH_CACHE:-$REPO_ROOT/.cache}"
LOG_DIR="$VAR_DIR/log"
RUN_DIR="$VAR_DIR/run"
BIND_HOST="${LABELMESH_BIND_HOST:-127.0.0.1}"

COMPONENT="${COMPONENT:-local}"

log() { printf '[%s] %s\n' "$COMPONENT" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$COMPONENT" "$*" >&2; exit 1; }

# now_s: seconds since epoch with decimals, for timings.
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1fs", b - a }'; }

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# read_pid FILE: print the pid stored in FILE when that process is alive.
read_pid() {
  local file="$1" pid
  [[ -f "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

# running_pid FILE MARKER: print the pid from FILE when it is alive AND its
# command line contains MARKER (guards against a recycled pid).
running_pid() {
  local file="$1" marker="$2" pid
  pid="$(read_pid "$file")" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  printf '%s\n' "$pid"
}

# stop_pid NAME PIDFILE MARKER [TIMEOUT_S]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local name="$1" file="$2" marker="$3" timeout="${4:-30}" pid i
  if ! pid="$(running_pid "$file" "$marker")"; then
    log "$name is not running"
    rm -f "$file"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$file"
  log "$name stopped"
}

# show_log_tail FILE: print the end of a log to stderr (for failures).
show_log_tail() {
  local file="$1" n="${2:-40}"
  [[ -f "$file" ]] || return 0
  printf -- '----- last %s lines of %s -----\n' "$n" "$file" >&2
  tail -n "$n" "$file" >&2
  printf -- '-----\n' >&2
}

ensure_dirs() { mkdir -p "$LOG_DIR" "$RUN_DIR" "$@"; }
