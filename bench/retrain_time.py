"""Time of one trainer retrain on stored embeddings at 1k / 5k / 10k labels (BANKING77, MiniLM), stage by stage.

Usage: python bench/retrain_time.py [--sizes 1000,5000,10000] [--repeats 1] [--no-db]
Writes bench/results/retrain_time.json.

Stages, as the trainer runs them (services/trainer/app.py `train`):
  read   the labelled examples (embedding bytes + label) from FerretDB's `examples` collection, stacked into X;
  fit    `train_head` as the trainer calls it (C=50): with at least `calibration_min_holdout` (300) held-out
         labels the temperature is fitted on them (one logistic-regression fit); with fewer, on k-fold
         out-of-fold logits (20 folds under 1,000 rows, else 5: k+1 fits);
  eval   held-out evaluation of the new head (10% holdout, as the trainer's default).
`single_fit_seconds` is one logistic-regression fit alone: what a retrain would cost if calibration were
not refitted by cross-validation. The embeddings are the real MiniLM vectors, cached under .cache/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import numpy as np
from _common import cached_embeddings, environment, load_split, table, write_result

from labelmesh.ml import load_encoder, train_head
from labelmesh.ml.head import DEFAULT_C, _fit_lr
from services.trainer.evaluation import evaluate
from services.trainer.settings import TrainerSettings


async def db_read_seconds(X: np.ndarray, y: list[str]) -> tuple[float, float]:
    """Insert n example docs into a throwaway trainer-shaped collection; time the trainer's read of them."""
    from pymongo import AsyncMongoClient, InsertOne

    from labelmesh.runtime.mongo import bulk_write
    from labelmesh.runtime.settings import CommonSettings

    client: AsyncMongoClient = AsyncMongoClient(CommonSettings().mongo_uri)
    db = client[f"bench{uuid.uuid4().hex[:8]}_trainer"]
    try:
        started = time.perf_counter()
        ops = [InsertOne({"_id": f"b/{i}", "project": "b", "item_id": str(i), "label": label, "version": 1,
                          "embedding": vec.astype(np.float32).tobytes(), "encoder": "minilm", "holdout": False})
               for i, (vec, label) in enumerate(zip(X, y, strict=True))]
        await bulk_write(db["examples"], ops, ordered=False)
        write = time.perf_counter() - started
        started = time.perf_counter()
        query = {"project": "b", "label": {"$exists": True}, "embedding": {"$exists": True}, "holdout": False}
        docs = [d async for d in db["examples"].find(query, sort=[("_id", 1)])]
        stacked = np.stack([np.frombuffer(d["embedding"], np.float32) for d in docs])
        read = time.perf_counter() - started
        assert stacked.shape == X.shape
        await db["examples"].drop()
        return read, write
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-db", action="store_true", help="skip the FerretDB read stage")
    args = parser.parse_args()

    encoder = load_encoder("minilm", device="cpu")
    texts, labels = load_split("train")
    X_all, _ = cached_embeddings(encoder, "train", texts)
    taxonomy = sorted(set(labels))
    runs = []
    for n in (int(s) for s in args.sizes.split(",")):
        n = min(n, len(labels))
        for repeat in range(args.repeats):
            rng = np.random.default_rng(repeat)
            idx = rng.permutation(len(labels))[:n]
            holdout = idx[: n // 10]
            train = idx[n // 10:]
            X, y = X_all[train], [labels[i] for i in train]
            read, write = asyncio.run(db_read_seconds(X_all[idx], [labels[i] for i in idx])) if not args.no_db \
                else (float("nan"), float("nan"))
            load_before = os.getloadavg()[0]
            started, cpu = time.perf_counter(), time.process_time()
            on_holdout = len(holdout) >= TrainerSettings().calibration_min_holdout
            X_cal = X_all[holdout] if on_holdout else None
            y_cal = [labels[i] for i in holdout] if on_holdout else None
            head = train_head(X, y, X_cal, y_cal, encoder_name=encoder.name, classes=taxonomy, seed=repeat)
            fit, fit_cpu = time.perf_counter() - started, time.process_time() - cpu
            started = time.perf_counter()
            result = evaluate(head, X_all[holdout], [labels[i] for i in holdout])
            ev = time.perf_counter() - started
            started, cpu = time.perf_counter(), time.process_time()
            _fit_lr(X, np.array([taxonomy.index(c) for c in y]), DEFAULT_C, repeat, 2000)
            single, single_cpu = time.perf_counter() - started, time.process_time() - cpu
            runs.append({"labels": n, "train_rows": len(train), "repeat": repeat,
                         "cv_folds": head.metrics["calibration_source"], "db_write_seconds": write,
                         "db_read_seconds": read, "fit_seconds": fit, "fit_cpu_seconds": fit_cpu, "eval_seconds": ev,
                         "retrain_seconds": fit + ev + (0 if np.isnan(read) else read),
                         "single_fit_seconds": single, "single_fit_cpu_seconds": single_cpu,
                         "heldout_accuracy": result.accuracy,
                         "load_average_1min_before_fit": load_before})
            print(runs[-1], flush=True)
    summary = []
    for n in sorted({r["labels"] for r in runs}):
        rs = [r for r in runs if r["labels"] == n]
        summary.append({k: statistics.median(r[k] for r in rs) for k in
                        ("labels", "db_read_seconds", "fit_seconds", "fit_cpu_seconds", "eval_seconds",
                         "retrain_seconds", "single_fit_seconds", "single_fit_cpu_seconds")})
    payload = {
        "benchmark": "retrain_time",
        "dataset": "BANKING77 train split (random subsets), 10% held out as the trainer does",
        "encoder": encoder.name,
        "C": DEFAULT_C,
        "environment": environment(),
        "summary_medians": summary,
        "runs": runs,
        "notes": "Wall-clock timings on a shared 2-core machine: see load averages; a busy machine inflates them. "
                 "*_cpu_seconds is the process's CPU time (all its threads), less sensitive to other load.",
    }
    path = write_result("retrain_time", payload)
    print(table(["labels", "read s", "fit s", "fit cpu s", "eval s", "retrain s", "single fit s"],
                [[s["labels"], s["db_read_seconds"], s["fit_seconds"], s["fit_cpu_seconds"], s["eval_seconds"],
                  s["retrain_seconds"], s["single_fit_seconds"]] for s in summary]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
