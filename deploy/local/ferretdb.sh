#!/usr/bin/env bash
# FerretDB 1.x (MongoDB wire protocol, SQLite backend) for local runs and CI.
#
#   deploy/local/ferretdb.sh {build|start|stop|status}
#
# build   download FerretDB's module from the Go module proxy, go-build it into
#         .cache/bin/ferretdb (skipped when the cached binary has the wanted version)
# start   build if needed, start in the background, wait for a real `ping`
# stop    SIGTERM, wait, SIGKILL after FERRETDB_STOP_TIMEOUT seconds
# status  exit 0 when running and answering
#
# Env: MONGO_PORT (27017), FERRETDB_VERSION (v1.24.2), FERRETDB_GOGC (400), FERRETDB_GOMEMLIMIT (1GiB),
# FERRETDB_DEBUG_ADDR
# ("-" = debug HTTP listener off), FERRETDB_LOG_LEVEL (info),
# FERRETDB_START_TIMEOUT (60), LABELMESH_VAR (<repo>/var), LABELMESH_CACHE
# (<repo>/.cache).
set -euo pipefail
COMPONENT=ferretdb
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
MONGO_PORT="${MONGO_PORT:-27017}"
FERRETDB_DEBUG_ADDR="${FERRETDB_DEBUG_ADDR:--}"
FERRETDB_LOG_LEVEL="${FERRETDB_LOG_LEVEL:-info}"
START_TIMEOUT="${FERRETDB_START_TIMEOUT:-60}"
STOP_TIMEOUT="${FERRETDB_STOP_TIMEOUT:-20}"

BIN="$CACHE_DIR/bin/ferretdb"
BIN_STAMP="$CACHE_DIR/bin/ferretdb.version"
DATA_DIR="$VAR_DIR/ferretdb"
STATE_DIR="$VAR_DIR/ferretdb-state"
LOG_FILE="$LOG_DIR/ferretdb.log"
PID_FILE="$RUN_DIR/ferretdb.pid"
# Unique to this var dir: lets stop/status recognise our own process.
MARKER="--sqlite-url=file:$DATA_DIR/"
# SQLite's default synchronous=FULL syncs the write-ahead log at every commit, and FerretDB commits every
# statement. NORMAL (SQLite's advice for WAL) syncs at checkpoints: a commit still survives FerretDB or a
# service being killed, and the database stays consistent; only a power cut or kernel crash can lose the
# last commits. This is the local and CI server (production uses MongoDB). Claiming 15,000 events through
# the inbox (one insert per batch of 500 plus one per event): 1.65 s and 1.0 s of FerretDB CPU with FULL,
# 1.0 s and 0.7 s with NORMAL.
# Go's collector took 14% of FerretDB's CPU in a MiniLM burst (pprof): GOGC=400 lets the heap grow to five
# times the live data between collections, and GOMEMLIMIT caps that. FerretDB's CPU in a 3,000-item stub
# burst went from 6.2-6.9 to 5.5 s (two runs each); its resident memory after both runs was 149 MB.

# The build carries two patches (patch_id_lookup, patch_id_in); the stamp names them, so a build without
# them is rebuilt.
BUILD_ID="$FERRETDB_VERSION+id-index+id-in"
built() { [[ -x "$BIN" && "$(cat "$BIN_STAMP" 2>/dev/null)" == "$BUILD_ID" ]]; }

# FerretDB 1.24's SQLite backend looks documents up by `_id` with `_ferretdb_sjson->'$._id' = ?`, but creates
# the unique `_id` index on `_ferretdb_sjson->"_id"`. SQLite matches index expressions as written, so the
# index is never used: every find, update or delete by `_id` scans the collection until it meets the
# document (1.0 s for a late document among 100,000 items; 0.0 ms through the index, same query, same
# file). `->'_id'` is the same JSON path in SQLite (a bare label means '$.label') and is the index's
# expression, so the patch changes the plan only. Production uses MongoDB; this is the local server.
patch_id_lookup() {
  local file="$1/internal/backends/sqlite/metadata/metadata.go"
  grep -q "IDColumn = DefaultColumn + \"->'\$._id'\"" "$file" \
    || die "FerretDB $FERRETDB_VERSION: the _id lookup expression in $file is not the one the patch expects"
  sed -i "s/IDColumn = DefaultColumn + \"->'\$._id'\"/IDColumn = DefaultColumn + \"->'_id'\"/" "$file"
  grep -q "IDColumn = DefaultColumn + \"->'_id'\"" "$file" || die "patching $file failed"
}

# FerretDB 1.24 hands only `_id` equality down to SQLite: `{"_id": {"$in": ids}}` reads and decodes every
# document of the collection, so the services looked batches up one `_id` at a time (a command, a round trip
# and a socket write each: 14% of qc's CPU in a MiniLM burst, py-spy). The patch adds
# ferretdb-patches/id_in_pushdown.go and one case to the collection's Query: an `$in` of up to 1,000 string
# or ObjectID `_id`s becomes `WHERE <_id column> IN (...)` through the index. FerretDB's handler still
# applies the whole filter to what is read, so the clause narrows the read and cannot change the answer.
patch_id_in() {
  local file="$1/internal/backends/sqlite/collection.go"
  cp "$LOCAL_DIR/ferretdb-patches/id_in_pushdown.go" "$1/internal/backends/sqlite/id_in_pushdown.go"
  # The Query's switch (the Explain's one sets filterPushdown between the case and the clause, so it differs).
  perl -0pi -e 's/(\t\tcase string, types\.ObjectID:\n\t\t\twhereClause = fmt\.Sprintf\(` WHERE %s = \?`, metadata\.IDColumn\)\n\t\t\targs = \[\]any\{string\(must\.NotFail\(sjson\.MarshalSingleValue\(v\)\)\)\}\n)/$1\t\tcase *types.Document:\n\t\t\twhereClause, args = idInWhere(v.(*types.Document))\n/' "$file"
  [[ "$(grep -c 'idInWhere(v.(\*types.Document))' "$file")" == 1 ]] \
    || die "FerretDB $FERRETDB_VERSION: the _id lookup in $file's Query is not the one the patch expects"
}

cmd_build() {
  if built; then
    log "using cached $BIN ($FERRETDB_VERSION)"
    return 0
  fi
  command -v go >/dev/null || die "go is not on PATH; it is needed to build FerretDB"
  local t0 tmp
  t0="$(now_s)"
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "chmod -R u+w '$tmp' 2>/dev/null; rm -rf '$tmp'" EXIT
  mkdir -p "$tmp/bin" "$CACHE_DIR/bin"
  log "building $FERRETDB_MODULE@$FERRETDB_VERSION with $(go version | awk '{print $3}') (first time takes a few minutes)"
  # Not `go install ...@version`: that binary panics at start, because FerretDB
  # embeds build/version/version.txt, which its release tooling generates from
  # git and the module zip lacks. So: download the module, copy it somewhere
  # writable, write version.txt, build there.
  local dir
  dir="$(go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download $FERRETDB_MODULE@$FERRETDB_VERSION gave no module directory"
  cp -r "$dir" "$tmp/src"
  chmod -R u+w "$tmp/src"
  printf '%s\n' "$FERRETDB_VERSION" >"$tmp/src/build/version/version.txt"
  patch_id_lookup "$tmp/src"
  patch_id_in "$tmp/src"
  (cd "$tmp/src" && go build -trimpath -ldflags="-s -w" -o "$tmp/bin/ferretdb" ./cmd/ferretdb) \
    || die "go build of FerretDB $FERRETDB_VERSION failed (see above)"
  "$tmp/bin/ferretdb" --version >/dev/null 2>&1 || die "the built ferretdb does not run: $("$tmp/bin/ferretdb" --version 2>&1 | head -3)"
  mv -f "$tmp/bin/ferretdb" "$BIN"
  printf '%s\n' "$BUILD_ID" >"$BIN_STAMP"
  log "built $BIN ($(du -h "$BIN" | cut -f1)) in $(elapsed "$t0")"
}

# answers: a real MongoDB ping over the wire (stdlib only), else the port.
answers() {
  if command -v "${PYTHON:-python3}" >/dev/null 2>&1; then
    "${PYTHON:-python3}" "$LOCAL_DIR/mongo_ping.py" "$BIND_HOST" "$MONGO_PORT" 2
  else
    port_open "$BIND_HOST" "$MONGO_PORT"
  fi
}

cmd_start() {
  local pid t0 i
  if pid="$(running_pid "$PID_FILE" "$MARKER")"; then
    log "already running (pid $pid) on $BIND_HOST:$MONGO_PORT"
    return 0
  fi
  if port_open "$BIND_HOST" "$MONGO_PORT"; then
    die "port $BIND_HOST:$MONGO_PORT is already in use by another process (not ours: no live pid in $PID_FILE); stop it or set MONGO_PORT"
  fi
  cmd_build
  ensure_dirs "$DATA_DIR" "$STATE_DIR"
  t0="$(now_s)"
  log "starting on $BIND_HOST:$MONGO_PORT, data in $DATA_DIR, log $LOG_FILE"
  printf '\n=== %s ferretdb.sh start ===\n' "$(date -Is)" >>"$LOG_FILE"
  GOGC="${FERRETDB_GOGC:-400}" GOMEMLIMIT="${FERRETDB_GOMEMLIMIT:-1GiB}" setsid "$BIN" \
    --handler=sqlite \
    "$MARKER?_pragma=synchronous(NORMAL)" \
    --listen-addr="$BIND_HOST:$MONGO_PORT" \
    --state-dir="$STATE_DIR" \
    --debug-addr="$FERRETDB_DEBUG_ADDR" \
    --telemetry=disable \
    --log-level="$FERRETDB_LOG_LEVEL" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  for ((i = 0; i < START_TIMEOUT * 4; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      show_log_tail "$LOG_FILE"
      die "FerretDB exited during startup"
    fi
    if port_open "$BIND_HOST" "$MONGO_PORT" && answers; then
      log "ready (pid $pid) in $(elapsed "$t0")"
      return 0
    fi
    sleep 0.25
  done
  show_log_tail "$LOG_FILE"
  stop_pid ferretdb "$PID_FILE" "$MARKER" "$STOP_TIMEOUT"
  die "FerretDB did not answer a ping on $BIND_HOST:$MONGO_PORT within ${START_TIMEOUT}s"
}

cmd_stop() { stop_pid ferretdb "$PID_FILE" "$MARKER" "$STOP_TIMEOUT"; }

cmd_status() {
  local pid
  if pid="$(running_pid "$PID_FILE" "$MARKER")"; then
    if answers; then
      log "running (pid $pid) on $BIND_HOST:$MONGO_PORT, answering"
      return 0
    fi
    log "running (pid $pid) but not answering on $BIND_HOST:$MONGO_PORT"
    return 1
  fi
  log "not running"
  return 3
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {build|start|stop|status}" >&2; exit 2 ;;
esac
