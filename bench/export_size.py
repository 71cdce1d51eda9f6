"""Size and write time of an export snapshot (JSONL, Parquet, Label Studio) of BANKING77 final labels.

Usage: python bench/export_size.py [--sizes 1000,10003]
Writes bench/results/export_size.json.

The rows are what `labelmesh export` builds from the trainer's database: text, final label and version,
provenance, guideline version, split, and the champion's top label and probability (here a head trained on
1,000 rows over MiniLM embeddings, cached under .cache/). The database read is not timed here (see
bench/retrain_time.py for reading examples from FerretDB); only building rows, writing files and loading
them back with Hugging Face `datasets`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import cached_embeddings, environment, load_split, table, write_result

from labelmesh.ml import load_encoder, train_head
from services.trainer.exports import FILE_NAMES, ExportFormat, build_manifest, build_rows, write_files
from services.trainer.domain.lineage import in_holdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10003")
    args = parser.parse_args()
    encoder = load_encoder("minilm", device="cpu")
    texts, labels = load_split("train")
    X, _ = cached_embeddings(encoder, "train", texts)
    taxonomy = sorted(set(labels))
    head = train_head(X[:1000], labels[:1000], encoder_name=encoder.name, classes=taxonomy, cv_folds=5)
    provenances = ("auto", "single_review", "consensus", "expert")
    runs = []
    for n in (int(s) for s in args.sizes.split(",")):
        examples = [{"item_id": f"train-{i}", "label": labels[i], "version": 1, "provenance": provenances[i % 4],
                     "guideline_version": 1, "golden": False, "holdout": in_holdout("bench", f"train-{i}", 0.1),
                     "embedding": X[i].astype(np.float32).tobytes()} for i in range(n)]
        item_texts = {f"train-{i}": texts[i] for i in range(n)}
        started = time.perf_counter()
        rows = build_rows(examples, item_texts, head, 1)
        build = time.perf_counter() - started
        models = [{"version": 1, "promoted": True, "training_set_version": "bench", "sha256": head.checksum()}]
        manifest = build_manifest("bench", rows, taxonomy=taxonomy, champion=models[0], models=models,
                                  created_at="bench")
        with tempfile.TemporaryDirectory() as tmp:
            result = {"rows": n, "build_rows_seconds": build}
            for fmt in ExportFormat:
                started = time.perf_counter()
                written = write_files(rows, manifest, Path(tmp), [fmt])
                result[f"{fmt.value}_write_seconds"] = time.perf_counter() - started
                entry = next(f for f in written["files"] if f["name"] == FILE_NAMES[fmt])
                result[f"{fmt.value}_bytes"] = entry["bytes"]
            result["manifest_bytes"] = (Path(tmp) / "manifest.json").stat().st_size
            import datasets

            for builder, fmt in (("json", ExportFormat.JSONL), ("parquet", ExportFormat.PARQUET)):
                started = time.perf_counter()
                ds = datasets.load_dataset(builder, data_files=str(Path(tmp) / FILE_NAMES[fmt]), split="train",
                                           cache_dir=str(Path(tmp) / "hf"))
                assert ds.num_rows == n
                result[f"{fmt.value}_hf_load_seconds"] = time.perf_counter() - started
        runs.append(result)
        print(result, flush=True)
    payload = {"benchmark": "export_size", "dataset": "BANKING77 train split as final labels",
               "encoder": encoder.name, "environment": environment(), "runs": runs}
    path = write_result("export_size", payload)
    print(table(["rows", "jsonl bytes", "parquet bytes", "label-studio bytes", "manifest bytes"],
                [[r["rows"], r["jsonl_bytes"], r["parquet_bytes"], r["label-studio_bytes"], r["manifest_bytes"]]
                 for r in runs]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
