"""Accuracy and calibration of the head on BANKING77 test for 500 / 1,500 / all training rows.

Usage: python bench/calibration.py [--encoder minilm] [--sizes 500,1500,all] [--seeds 10]
Writes bench/results/calibration.json (or calibration-<encoder>.json for a non-default encoder).
Embeddings are cached under .cache/embeddings/, so reruns only pay for the heads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from _common import cached_embeddings, environment, load_split, table, write_result

from labelmesh.ml import expected_calibration_error, load_encoder, negative_log_likelihood, softmax, train_head
from labelmesh.ml.calibration import selective_accuracy
from labelmesh.ml.head import DEFAULT_C

THRESHOLDS = (0.95, 0.70)


def evaluate(probs: np.ndarray, y: np.ndarray) -> dict:
    out = {
        "accuracy": float((probs.argmax(axis=1) == y).mean()),
        "ece": expected_calibration_error(probs, y, n_bins=15),
        "nll": negative_log_likelihood(probs, y),
    }
    for t in THRESHOLDS:
        share, acc = selective_accuracy(probs, y, t)
        out[f"share_ge_{t:.2f}"], out[f"accuracy_ge_{t:.2f}"] = share, acc
    return out


def run_size(X, y, X_test, y_test, taxonomy, n, seed, C, extra_cal) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    idx, rest = perm[:n], perm[n:]
    y_tr = [y[i] for i in idx]
    index = {c: i for i, c in enumerate(taxonomy)}
    y_te = np.array([index[c] for c in y_test])

    start = time.perf_counter()
    temp = train_head(X[idx], y_tr, encoder_name="bench", classes=taxonomy, C=C, seed=seed)
    seconds = time.perf_counter() - start
    iso = train_head(X[idx], y_tr, encoder_name="bench", classes=taxonomy, C=C, seed=seed, calibration="isotonic")
    raw = np.zeros((len(X_test), len(taxonomy)))
    raw[:, temp.class_index] = softmax(temp.logits(X_test))
    result = {
        "n_train": n,
        "seed": seed,
        "n_trained_classes": temp.metrics["n_trained_classes"],
        "temperature": temp.temperature,
        "train_seconds_with_cv_calibration": seconds,
        "raw": evaluate(raw, y_te),
        "temperature_cv": evaluate(temp.predict_proba(X_test), y_te),
        "isotonic_cv": evaluate(iso.predict_proba(X_test), y_te),
    }
    # A random subset can miss a class: its test items are always wrong and no calibrator can know it.
    # The ECE over the test items of trained classes shows how much of the total that accounts for.
    seen = np.isin(y_te, temp.class_index)
    result["test_share_untrained_classes"] = float(1 - seen.mean())
    for key, head in (("temperature_cv", temp), ("isotonic_cv", iso)):
        probs = head.predict_proba(X_test[seen])
        result[key]["ece_trained_classes"] = expected_calibration_error(probs, y_te[seen], n_bins=15)
    if extra_cal and len(rest) >= extra_cal:
        # Alternative source: calibrate on `extra_cal` labelled rows the head never trained on.
        cal = rest[:extra_cal]
        held = train_head(X[idx], y_tr, X[cal], [y[i] for i in cal], encoder_name="bench", classes=taxonomy, C=C)
        result["temperature_heldout"] = evaluate(held.predict_proba(X_test), y_te) | {"temperature": held.temperature}
    return result


def c_sweep(X, y, taxonomy, grid, n, seed=0) -> list[dict]:
    """Pick C on training rows only: 5-fold CV accuracy and (temperature-free) NLL."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    idx = np.random.default_rng(seed).permutation(len(y))[:n]
    index = {c: i for i, c in enumerate(taxonomy)}
    yy = np.array([index[y[i]] for i in idx])
    out = []
    for C in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # small classes vs 5 folds
            warnings.simplefilter("ignore", RuntimeWarning)  # a fold missing a class: handled below
            proba = cross_val_predict(
                LogisticRegression(C=C, max_iter=2000),
                X[idx],
                yy,
                cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                method="predict_proba",
            )
        classes = np.unique(yy)
        col = {c: i for i, c in enumerate(classes)}
        yc = np.array([col[c] for c in yy])
        out.append({"n_train": n, "C": C, "cv_accuracy": float((proba.argmax(1) == yc).mean()), "cv_nll_raw": negative_log_likelihood(proba, yc)})
    return out


def summarise(runs: list[dict], key: str, metric: str) -> float:
    return statistics.fmean(r[key][metric] for r in runs if key in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="500,1500,all")
    ap.add_argument("--seeds", type=int, default=10, help="random training subsets per size (1 for 'all')")
    ap.add_argument("--C", type=float, default=DEFAULT_C)
    ap.add_argument("--extra-cal", type=int, default=1000, help="held-out calibration rows for the alternative")
    ap.add_argument("--c-grid", default="1,5,20,50,200", help="empty to skip the C sweep")
    ap.add_argument("--c-sweep-sizes", default="500,all")
    args = ap.parse_args()

    env_at_start = environment()
    encoder = load_encoder(args.encoder, device=args.device)
    train_texts, y_train = load_split("train")
    test_texts, y_test = load_split("test")
    taxonomy = tuple(sorted(set(y_train)))
    X_train, t_train = cached_embeddings(encoder, "train", train_texts)
    X_test, t_test = cached_embeddings(encoder, "test", test_texts)
    embed_seconds = None if t_train is None or t_test is None else t_train + t_test

    sizes = [len(y_train) if s == "all" else int(s) for s in args.sizes.split(",")]
    runs = []
    for n in sizes:
        for seed in range(1 if n >= len(y_train) else args.seeds):
            runs.append(run_size(X_train, y_train, X_test, y_test, taxonomy, n, seed, args.C, args.extra_cal))
            print(f"  n={n} seed={seed} done", flush=True)

    sweep = []
    if args.c_grid:
        grid = [float(c) for c in args.c_grid.split(",")]
        for s in args.c_sweep_sizes.split(","):
            sweep += c_sweep(X_train, y_train, taxonomy, grid, len(y_train) if s == "all" else int(s))

    payload = {
        "benchmark": "calibration",
        "dataset": "BANKING77 (train 10,003 / test 3,080, 77 classes)",
        "encoder": encoder.name,
        "C": args.C,
        "embedding_seconds_train_plus_test": embed_seconds,
        "environment": env_at_start,
        "load_average_at_end": os.getloadavg(),
        "notes": "temperature_cv/isotonic_cv: calibrator fitted on out-of-fold logits of the training rows "
        "(what train_head does by default: 20 folds under 1,000 rows, else 5, each fitted from scratch). ece_trained_classes: over test items of classes the subset contains. temperature_heldout: calibrated on --extra-cal unused train rows. "
        "All metrics on the test split; ECE top-label, 15 equal-width bins.",
        "runs": runs,
        "c_sweep": sweep,
    }
    path = write_result("calibration" if args.encoder == "minilm" else f"calibration-{encoder.name}", payload)

    rows = []
    for n in sizes:
        group = [r for r in runs if r["n_train"] == n]
        for key in ("raw", "temperature_cv", "isotonic_cv", "temperature_heldout"):
            if not any(key in r for r in group):
                continue
            m = lambda metric: summarise(group, key, metric)  # noqa: E731
            worst = max(r[key]["ece"] for r in group if key in r)
            rows.append([n, len(group), key, m("accuracy"), m("ece"), worst, m("nll"),
                         m("share_ge_0.95"), m("accuracy_ge_0.95"), m("share_ge_0.70"), m("accuracy_ge_0.70")])
    print(f"\nencoder={encoder.name} C={args.C}  (means over seeds; test split)")
    print(table(["n_train", "seeds", "calibration", "acc", "ECE", "ECE max", "NLL",
                 "share>=.95", "acc>=.95", "share>=.70", "acc>=.70"], rows))
    if sweep:
        print("\nC sweep (5-fold CV on training rows only)")
        print(table(["n_train", "C", "cv acc", "cv NLL raw"], [[s["n_train"], s["C"], s["cv_accuracy"], s["cv_nll_raw"]] for s in sweep]))
    print("\nper seed, temperature_cv (ECE over all test items / over those of trained classes)")
    print(table(["n_train", "seed", "trained classes", "T", "acc", "ECE", "ECE trained classes"],
                [[r["n_train"], r["seed"], r["n_trained_classes"], r["temperature"], r["temperature_cv"]["accuracy"],
                  r["temperature_cv"]["ece"], r["temperature_cv"]["ece_trained_classes"]] for r in runs]))
    temps = {n: [round(r["temperature"], 3) for r in runs if r["n_train"] == n] for n in sizes}
    print(f"\nfitted temperatures: {temps}\nwrote {path}")


if __name__ == "__main__":
    main()
