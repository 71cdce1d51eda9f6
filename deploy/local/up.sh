#!/usr/bin/env bash
# Start the local infrastructure (Kafka + FerretDB), fetching/building first when
# needed, wait until both answer, then declare the project's topics.
#
#   deploy/local/up.sh          (works from any cwd; re-runnable)
#
# Env: see kafka.sh and ferretdb.sh; PYTHON (<repo>/.venv/bin/python if present, else
# python3) runs `-m labelmesh.infra topics`.
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

# PYTHON: explicit choice, else the repo's own virtualenv when it has one, else python3.
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  [[ -x "$REPO_ROOT/.venv/bin/python" ]] && PYTHON="$REPO_ROOT/.venv/bin/python"
fi
if (cd "$REPO_ROOT" && "$PYTHON" -c 'import labelmesh.infra' >/dev/null 2>&1); then
  log "declaring topics: $PYTHON -m labelmesh.infra topics"
  # Point the settings (env prefix LABELMESH_) at the broker just started, unless set.
  (cd "$REPO_ROOT" \
    && LABELMESH_KAFKA_BOOTSTRAP="${LABELMESH_KAFKA_BOOTSTRAP:-$BIND_HOST:${KAFKA_PORT:-9092}}" \
      "$PYTHON" -m labelmesh.infra topics)
else
  log "labelmesh.infra not importable with $PYTHON; skipping topic setup"
fi
log "up in $(elapsed "$t0"): Kafka $BIND_HOST:${KAFKA_PORT:-9092}, MongoDB wire (FerretDB) $BIND_HOST:${MONGO_PORT:-27017}"
