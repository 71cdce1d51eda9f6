#!/usr/bin/env bash
# Start the local infrastructure (Kafka + FerretDB), fetching/building first when
# needed, wait until both answer, then declare the project's topics.
#
#   deploy/local/up.sh          (works from any cwd; re-runnable)
#
# Env: see kafka.sh and ferretdb.sh; PYTHON (python3) runs `-m labelmesh.infra topics`.
set -euo pipefail
COMPONENT=up
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0="$(now_s)"
# The two first-time preparations are independent: overlap the Maven fetch
# (network bound) with the Go build (CPU bound).
"$LOCAL_DIR/kafka.sh" fetch &
fetch_pid=$!
"$LOCAL_DIR/ferretdb.sh" build || { wait "$fetch_pid" || true; die "FerretDB build failed"; }
wait "$fetch_pid" || die "Kafka fetch failed"

"$LOCAL_DIR/kafka.sh" start
"$LOCAL_DIR/ferretdb.sh" start

PYTHON="${PYTHON:-python3}"
if (cd "$REPO_ROOT" && "$PYTHON" -c 'import labelmesh.infra' >/dev/null 2>&1); then
  log "declaring topics: $PYTHON -m labelmesh.infra topics"
  (cd "$REPO_ROOT" && "$PYTHON" -m labelmesh.infra topics)
else
  log "labelmesh.infra not importable with $PYTHON; skipping topic setup"
fi
log "up in $(elapsed "$t0"): Kafka $BIND_HOST:${KAFKA_PORT:-9092}, MongoDB wire (FerretDB) $BIND_HOST:${MONGO_PORT:-27017}"
