#!/usr/bin/env bash
# Stop the local infrastructure started by up.sh. Data in var/ is kept.
set -euo pipefail
COMPONENT=down
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rc=0
"$LOCAL_DIR/ferretdb.sh" stop || rc=1
"$LOCAL_DIR/kafka.sh" stop || rc=1
exit "$rc"
