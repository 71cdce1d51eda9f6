#!/usr/bin/env bash
# "Label your own data" (README.md): a project, two annotators, a CSV, labels in the terminal, progress, export.
# tests/e2e/test_label_your_own_data.py runs this file as it is. Needs a running stack and LABELMESH_ADMIN_TOKEN.
set -euo pipefail
cd "$(dirname "$0")"
export LABELMESH_GATEWAY="${LABELMESH_GATEWAY:-127.0.0.1:50051}"

# 1. A project: its label set (one per line) and its guidelines.
labelmesh project create reviews --labels labels.txt --guidelines guidelines.md

# 2. Two annotators; each token is printed once: hand it to the person.
ALICE=$(labelmesh annotator add alice --project reviews)
BOB=$(labelmesh annotator add bob --project reviews)
labelmesh annotator list

# 3. Ingest the CSV: the whole file is checked first; `id` is the item id, other columns travel as metadata.
labelmesh ingest reviews.csv --project reviews --id-column id

# 4. Label in the terminal (on each annotator's own machine): type a label's number, s to skip, q to quit.
labelmesh annotate --project reviews --token "$ALICE"
labelmesh annotate --project reviews --token "$BOB"

# 5. Watch progress until every item has a final label.
labelmesh status --project reviews --watch --until-done

# 6. Export the final labels, with per-annotator labels, confidence, provenance and the metadata.
labelmesh export --project reviews --format jsonl --out "${OUT:-.}/reviews-labels.jsonl"
labelmesh export --project reviews --format hf --out "${OUT:-.}/reviews-dataset"
