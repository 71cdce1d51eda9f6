"""After how many labels qc's rules flag the default team's random answerer and drifter (and how often a good
annotator is flagged), on BANKING77 with the model's top-5 as the confusable labels, over several seeds.

Usage: python bench/qc_detection.py [--labels 600] [--seeds 5] [--encoder minilm]
Writes bench/results/qc_detection.json. This runs qc's domain rules with the service's default settings
on simulated label streams, without Kafka or a database (bench/qc_quality.py runs the service itself):
golden accuracy (golden.should_flag over the annotator's golden answers, 1 task in 10 golden), quality
drift (agreement with the model's top-1, window vs own start and vs the crowd), label-mix drift (drift.scan).
The service rescans drift every `drift_every` labels, so its flag lands at the next multiple of that.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter

import numpy as np
from _common import cached_embeddings, environment, load_split, write_result

from labelmesh.ml import load_encoder, train_head
from labelmesh.simulation import default_team
from services.qc.domain import drift, quality_drift
from services.qc.domain.golden import golden_accuracy, should_flag
from services.qc.settings import QcSettings

GOLDEN_RATE = 0.10


def streams(seed: int, n_labels: int, work: list[int], gold: list[int], labels: list[str], categories: list[str],
            top: dict[int, list[str]]) -> dict[str, list[tuple[bool, str, bool, bool]]]:
    """Per annotator: (golden?, label, correct?, agrees with the model's top-1?) for each label, in order."""
    rng = random.Random(seed)
    out = {}
    for sim in (s for s in default_team(seed) if s.role != "expert"):
        seq = []
        for _ in range(n_labels):
            golden = rng.random() < GOLDEN_RATE
            item = rng.choice(gold if golden else work)
            answer = sim.answer(labels[item], categories, top[item])
            seq.append((golden, answer, answer == labels[item], answer == top[item][0]))
        out[sim.name] = seq
    return out


def first_golden_flag(seq, s: QcSettings) -> int | None:  # noqa: ANN001
    correct = n = 0
    for position, (golden, _, ok, _) in enumerate(seq, start=1):
        if golden:
            n += 1
            correct += ok
            if should_flag(golden_accuracy(correct, n), threshold=s.golden_accuracy_threshold,
                           min_evidence=s.golden_min_evidence):
                return position
    return None


def at_pass(end: int | None, every: int) -> int | None:
    return None if end is None else math.ceil(end / every) * every


def detect(all_streams, s: QcSettings) -> dict[str, dict]:  # noqa: ANN001
    out = {}
    for name, seq in all_streams.items():
        others = [x for other, oseq in all_streams.items() if other != name for x in oseq]
        crowd_agree = (sum(x[3] for x in others), len(others))
        quality = quality_drift.scan_agreement([x[3] for x in seq], crowd=crowd_agree, baseline=s.quality_baseline,
                                               window=s.quality_window, step=s.quality_step, alpha=s.drift_alpha,
                                               min_drop=s.quality_min_drop)
        mix = drift.scan([x[1] for x in seq], crowd=Counter(x[1] for x in others), baseline=s.drift_baseline,
                         window=s.drift_window, step=s.drift_step, alpha=s.drift_alpha)
        q_base = quality_drift.first_drop(quality, "baseline")
        q_crowd = quality_drift.first_drop(quality, "crowd")
        m = drift.first_significant(mix)
        result = {
            "golden_suspension_at": first_golden_flag(seq, s),
            "quality_drift_vs_own_start_at": at_pass(q_base.end if q_base else None, s.drift_every),
            "quality_drift_vs_crowd_at": at_pass(q_crowd.end if q_crowd else None, s.drift_every),
            "label_mix_drift_at": at_pass(m.end if m else None, s.drift_every),
            "accuracy": sum(x[2] for x in seq) / len(seq),
            "agreement_with_model": sum(x[3] for x in seq) / len(seq),
        }
        flags = [v for k, v in result.items() if k.endswith("_at") and v is not None]
        result["first_flag_at"] = min(flags) if flags else None
        out[name] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=600, help="labels per annotator")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--pool", type=int, default=2000, help="work items to draw tasks from")
    parser.add_argument("--encoder", default="minilm")
    args = parser.parse_args()
    texts, labels = load_split("train")
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    boot, gold, work = order[:args.bootstrap], order[args.bootstrap:args.bootstrap + 100], \
        order[args.bootstrap + 100:args.bootstrap + 100 + args.pool]
    chosen = boot + gold + work
    encoder = load_encoder(args.encoder, device="cpu")
    x, _ = cached_embeddings(encoder, "train-qcdetect", [texts[i] for i in chosen])
    emb = {i: x[k] for k, i in enumerate(chosen)}
    categories = sorted(set(labels))
    head = train_head(np.stack([emb[i] for i in boot]), [labels[i] for i in boot], encoder_name=encoder.name,
                      classes=categories, cv_folds=5)
    rest = gold + work
    top = {i: [lbl for lbl, _ in t] for i, t in zip(rest, head.top_k(np.stack([emb[i] for i in rest]), 5), strict=True)}
    settings = QcSettings()
    runs = []
    for seed in range(args.seeds):
        runs.append(detect(streams(seed, args.labels, work, gold, labels, categories, top), settings))
        print(json.dumps({"seed": seed, **{k: v["first_flag_at"] for k, v in runs[-1].items()}}), flush=True)
    names = list(runs[0])
    summary = {}
    for name in names:
        firsts = [r[name]["first_flag_at"] for r in runs]
        summary[name] = {
            "flagged_in_runs": sum(f is not None for f in firsts), "runs": len(runs),
            "first_flag_at": firsts,
            "median_first_flag_at": float(np.median([f for f in firsts if f is not None])) if any(
                f is not None for f in firsts) else None,
            "by_rule": {k: [r[name][k] for r in runs] for k in runs[0][name] if k.endswith("_at") and k != "first_flag_at"},
        }
    result = {"bench": "qc_detection", "args": vars(args), "environment": environment(),
              "settings": {k: getattr(settings, k) for k in (
                  "golden_accuracy_threshold", "golden_min_evidence", "drift_every", "drift_alpha", "quality_baseline",
                  "quality_window", "quality_step", "quality_min_drop", "drift_baseline", "drift_window", "drift_step")},
              "drifter_degrades_after": 150, "summary": summary, "runs": runs}
    path = write_result("qc_detection", result)
    print(json.dumps(summary, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
