"""Learning curve on BANKING77: held-out accuracy vs labelled items when humans label in active-learning order
(margin, entropy) or in random order.

Usage: python bench/learning_curve.py [--sizes 100,200,...] [--seeds 3] [--calibration-sizes 1000]
Writes bench/results/learning_curve.json.

Simulation: the BANKING77 train split is the unlabelled pool, its gold labels stand in for the humans'
answers, the test split is the held-out set. Every run starts from the same random seed set (the first size);
after each round the head is retrained on everything labelled so far and the next batch is the pool's most
informative items under that head (labelmesh/ml/active.py), or a random batch. Acquisition and accuracy use
the logistic-regression fit the trainer makes (C=50); temperature scaling does not move the argmax, so the
accuracy is the trainer's. At the calibration sizes the full trainer head (train_head with its defaults,
cross-validated temperature) is fitted as well, for test ECE. Embeddings: MiniLM, cached under .cache/.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import cached_embeddings, environment, load_split, table, write_result

from labelmesh.ml import expected_calibration_error, load_encoder, softmax, train_head
from labelmesh.ml.active import Strategy, most_informative
from labelmesh.ml.head import DEFAULT_C, _fit_lr

STRATEGIES = ("random", Strategy.MARGIN.value, Strategy.ENTROPY.value)


def fit_probs(X: np.ndarray, y: np.ndarray, n_classes: int, seed: int, *targets: np.ndarray) -> list[np.ndarray]:
    """Probabilities over all classes (untrained ones get 0) for each target matrix."""
    _, coef, intercept, trained = _fit_lr(X, y, DEFAULT_C, seed, 2000)
    out = []
    for T in targets:
        probs = np.zeros((len(T), n_classes))
        probs[:, trained] = softmax(T @ coef.T + intercept)
        out.append(probs)
    return out


def run_curve(strategy: str, seed: int, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
              taxonomy: list[str], sizes: list[int], calibration_sizes: set[int]) -> list[dict]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    labelled = list(order[: sizes[0]])  # the same seed set for every strategy with this seed
    points = []
    for i, size in enumerate(sizes):
        idx = np.array(labelled)
        pool = np.setdiff1d(np.arange(len(y)), idx, assume_unique=False)
        started = time.perf_counter()
        test_probs, pool_probs = fit_probs(X[idx], y[idx], len(taxonomy), seed, X_test, X[pool])
        point = {"strategy": strategy, "seed": seed, "labelled": size,
                 "classes_seen": len(np.unique(y[idx])),
                 "accuracy": float((test_probs.argmax(axis=1) == y_test).mean()),
                 "ece_raw": expected_calibration_error(test_probs, y_test),
                 "fit_seconds": time.perf_counter() - started}
        if size in calibration_sizes:
            head = train_head(X[idx], [taxonomy[j] for j in y[idx]], encoder_name="bench", classes=taxonomy,
                              seed=seed)
            probs = head.predict_proba(X_test)
            point |= {"head_accuracy": float((probs.argmax(axis=1) == y_test).mean()),
                      "head_ece": expected_calibration_error(probs, y_test), "head_temperature": head.temperature}
        points.append(point)
        if i + 1 == len(sizes):
            break
        batch = sizes[i + 1] - size
        if strategy == "random":
            chosen = pool[rng.permutation(len(pool))[:batch]]
        else:
            chosen = pool[most_informative(pool_probs, batch, strategy)]
        labelled.extend(int(c) for c in chosen)
        print(f"{strategy:8s} seed {seed} {size:5d} labels: acc {point['accuracy']:.4f}"
              + (f" ece {point['head_ece']:.4f}" if "head_ece" in point else ""), flush=True)
    return points


def labels_to_reach(points: list[dict], target: float) -> int | None:
    return next((p["labelled"] for p in points if p["accuracy"] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,200,300,400,500,750,1000,1500")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--calibration-sizes", default="1000")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    calibration_sizes = {int(s) for s in args.calibration_sizes.split(",") if s}
    strategies = args.strategies.split(",")

    encoder = load_encoder("minilm", device="cpu")
    texts, labels = load_split("train")
    test_texts, test_labels = load_split("test")
    X, _ = cached_embeddings(encoder, "train", texts)
    X_test, _ = cached_embeddings(encoder, "test", test_texts)
    taxonomy = sorted(set(labels))
    index = {c: i for i, c in enumerate(taxonomy)}
    y, y_test = np.array([index[c] for c in labels]), np.array([index[c] for c in test_labels])

    started = time.perf_counter()
    runs: list[dict] = []
    for seed in range(args.seeds):
        for strategy in strategies:
            runs.extend(run_curve(strategy, seed, X, y, X_test, y_test, taxonomy, sizes, calibration_sizes))
            # Partial results after every curve: a long run on a shared machine can be cut short.
            write_result("learning_curve", {"benchmark": "learning_curve", "complete": False, "runs": runs})

    curves: dict[str, list[dict]] = {}
    for strategy in strategies:
        for size in sizes:
            ps = [p for p in runs if p["strategy"] == strategy and p["labelled"] == size]
            entry = {"labelled": size, "accuracy_median": statistics.median(p["accuracy"] for p in ps),
                     "accuracy_min": min(p["accuracy"] for p in ps), "accuracy_max": max(p["accuracy"] for p in ps),
                     "ece_raw_median": statistics.median(p["ece_raw"] for p in ps)}
            if all("head_ece" in p for p in ps):
                entry |= {"head_ece_median": statistics.median(p["head_ece"] for p in ps),
                          "head_accuracy_median": statistics.median(p["head_accuracy"] for p in ps)}
            curves.setdefault(strategy, []).append(entry)
    # Label savings: how many labels each order needs to reach random order's accuracy at its largest size.
    target = curves["random"][-1]["accuracy_median"] if "random" in curves else None
    savings = {}
    if target is not None:
        for strategy in strategies:
            per_seed = [labels_to_reach([p for p in runs if p["strategy"] == strategy and p["seed"] == s], target)
                        for s in range(args.seeds)]
            savings[strategy] = {"target_accuracy": target, "labels_needed_per_seed": per_seed}
    payload = {
        "benchmark": "learning_curve",
        "complete": True,
        "dataset": "BANKING77: train split as the pool (gold labels simulate annotators), test split held out",
        "encoder": encoder.name,
        "C": DEFAULT_C,
        "seeds": args.seeds,
        "sizes": sizes,
        "calibration_sizes": sorted(calibration_sizes),
        "curves_median_over_seeds": curves,
        "labels_to_reach_random_final_accuracy": savings,
        "seconds": time.perf_counter() - started,
        "environment": environment(),
        "runs": runs,
    }
    path = write_result("learning_curve", payload)
    headers = ["labelled"] + [f"{s} acc" for s in strategies] + [f"{s} ECE" for s in strategies]
    rows = []
    for i, size in enumerate(sizes):
        rows.append([size] + [curves[s][i]["accuracy_median"] for s in strategies]
                    + [curves[s][i].get("head_ece_median", float("nan")) for s in strategies])
    print(table(headers, rows))
    print(savings)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
