"""Quality benchmark: labelmesh vs manual single / double labelling vs a fixed-threshold policy, one simulated team.

Usage: python -m bench.quality [--items N] [--seed 0] [--online] [--label-price 0.10] [--expert-price 0.50]
       (or python bench/quality.py ...). Writes bench/results/quality.json, quality.png, quality.html
       (--name NAME: NAME.json, .png, .html instead, for a partial sweep beside the full one).

What runs: BANKING77 train (10,003 rows), shuffled as `labelmesh demo` shuffles it: 500 rows bootstrap
the first model (trusted labels, like the demo's internal team), 60 rows are golden items, the rest
(9,443) is the stream to label. Embeddings are the real all-MiniLM-L6-v2 ones (cached under
.cache/embeddings/ by bench/_common.py); trained heads are cached under .cache/quality/.
The team is labelmesh.simulation.default_team (five ~90% annotators, one who falls to 40% after 150
labels, one who answers at random, two 97% experts); mistakes go to intents that look alike: the
pre-label's top-5 when a task shows one, else the 5 intents with the nearest embedding centroids.

Policies, each through a fresh copy of the same team:
1. manual_single: one annotator per item.
2. manual_double: two annotators; on disagreement an expert adjudicates.
3. labelmesh: the services' own pure domain code with the services' default settings, read from their
   settings classes (see bench/quality_sim.py's docstring for exactly which functions and which
   stand-ins): decide_tier, learned thresholds, spot checks, golden injection and suspension, qc's
   next_step (a lone reviewer weighed against the pre-label's top-k, reliability-weighted consensus,
   the kNN check, escalation to experts), the trainer's held-out evaluation, promotion and threshold
   recommendation, and train_head retrained every --retrain-every items. Swept over the project's
   target auto-label error. labelmesh_before: the best policy of the previous results, for comparison.
4. fixed_threshold: auto-accept above a, one reviewer down to s, two plus a tie-breaker below,
   retrained every --retrain-every items; swept over (a, s) to draw the reference frontier.

How it relates to the live pipeline: the decisions are made by the same functions the services call
(services/router/domain, services/qc/finalize.py and services/qc/domain, services/trainer/domain/evaluation.py
and lineage.py, labelmesh/ml/head.py); what is replaced is only the shell: Kafka, Mongo and gRPC
become function calls, items are finalised one after another instead of concurrently, task
assignment is a random draw among active annotators, and experts only take expert work. By default
models are retrained on the TRUE labels of the items seen so far (one schedule of fits serves the
whole sweep; 2 shared CPU cores cannot afford ~19 fits per point); --online reruns the headline
configurations with models trained on each run's own final labels, as the live trainer does.
Each fit calibrates its temperature on the trainer's held-out items instead of cross-validation
once there are 200 of them (train_head's documented alternative), again to save fits.

Accounting: per streamed item. human_labels_per_item counts ordinary labels plus golden answers;
expert_labels_per_item counts expert work and expert golden answers; all_human = both. The 500
bootstrap rows are not counted (they are the same for labelmesh and the fixed policy; the manual
baselines do not need them: +0.053 labels per item if you charge them). The goal from issue 9
(>= 98% accuracy at <= 0.45 human labels per item) is judged on all_human, experts included.

Auto-accept off until the router's own evidence opens it (thresholds.NO_EVIDENCE; a trainer's recommendation no
longer sets the auto border): bench/results/quality-no-evidence.json, 2026-12-07 05:27-05:33, a short run (--targets
0.02,0.05,0.08 --fixed-auto 0.90,0.95 --fixed-single 0.50,0.70 --check-seeds "" --online ninety_team:labelmesh:0.02),
seed 0, all 9,443 items. Auto-accepted error (unchecked auto labels only) stays under its target at every 500-item
checkpoint (worst cumulative value once 100+ items were auto-accepted):
  | team, target | accuracy | labels/item | auto share | auto error (worst) | before (quality.json) |
  |---|---|---|---|---|---|
  | ninety 0.02 | 99.05% | 0.707 | 43.9% | 0.58% (1.06%) | 98.66% at 0.528 |
  | ninety 0.05 | 98.44% | 0.444 | 68.2% | 1.29% (1.51%) | 98.38% at 0.422 |
  | ninety 0.08 | 98.54% | 0.432 | 69.8% | 1.34% (1.60%) | 98.26% at 0.404 |
  | ninety 0.02 online | 98.93% | 0.741 | 40.4% | 0.61% (0.76%) | - |
  | default 0.02 | 99.23% | 0.834 | 32.7% | 0.27% (0.38%) | 98.75% at 0.586 |
  | default 0.05 | 98.45% | 0.452 | 68.0% | 1.26% (1.50%) | 98.43% at 0.468 |
  | default 0.08 | 98.36% | 0.429 | 70.3% | 1.40% (1.84%) | 98.35% at 0.427 |
  At the 2% default target the first auto label comes after ~2,000-3,000 items (149+ clean reviews above a border,
  and 50 in its 0.05 band under 15% wrong): +0.18-0.25 labels/item against the seed's 0.95, for +0.4-0.5 accuracy
  points. At 0.05-0.08 the border opens within the first 200-600 items and the cost is within 0.03 labels/item of
  before. The rest of this docstring describes the previous full run (quality.json), not rerun here.

Results (bench/results/quality.json, 2026-12-03 12:31-12:37, one run of python -m bench.quality --check-seeds 1,2;
ninety_team's numbers are the same to the digit as in the run of 08:34-09:01, which is where the "before" figures
below come from: nobody in that team was suspended, so the verdict rule changed nothing there).
ninety_team, the goal's team, seed 0, 9,443 items:
- manual_single 91.0% at 1.00 labels/item ($0.100); manual_double 99.3% at 2.18 ($0.290).
- labelmesh with the services' defaults: 98.4% at 0.422 labels/item (target 0.05) and 98.3% at 0.404 (0.08) meet
  the goal; 98.6% at 0.494 (0.04), 98.7% at 0.548 (0.03). Retrained on its own final labels (--online, as the live
  trainer does): 98.25% at 0.446 (target 0.05), also meeting it; 98.6% at 0.479 (0.04).
  Where the 0.422 goes (target 0.05): tiers auto 70.5%, single 28.2%, expert 1.4%, no multi; ordinary labels
  0.332 (single reviews, spot checks and their golden answers), expert labels 0.090 (escalations 0.073 per item,
  0.010 of them kNN flags, the expert tier, experts' golden answers); golden answers of both kinds 0.018. Per
  tier: auto 98.7% right, single 97.6%, expert 96.1%.
  The first 500 items cost 0.91 labels/item, the first 2,000 0.63; the second half 0.334 at 98.5%.
- labelmesh_before (the best policy of two rounds ago, its own rules pinned): 98.4% at 0.494 (0.03), 97.99% at
  0.459 (0.04).
- The fixed-threshold frontier: 98.3% at 0.572 (a=0.90, s=0.90) is its only point >= 98%; 97.6% at 0.472.
- What changed (each a service default; bench/results/quality.json of 2026-11-28 14:15 is "before"):
  1. router: the auto border is also held to its own error: the pre-labels in the 0.05 band just above it must
     be shown (one-sided 95% bound) under 15% wrong before it moves down, and it steps up when that band is shown
     over 15% (RouterSettings.auto_border_error, thresholds.learn_auto_threshold(border_error=)). Before, only the
     auto region's average counted; dominated by near-certain items, it let the border slide to where the
     pre-labels were 10-15% wrong, by how far depending on the seed: accuracy fell with the target to 96.3% (0.08).
  2. router: the single band starts at its floor for a project's first model instead of the seed's 0.70
     (RouterSettings.single_start, thresholds.starting_thresholds), and the floor is 0.15 instead of 0.30: the
     3-annotator multi tier (1.4-1.8% of items, 3 labels each; 27% of the first 500 items in a seed-1 side run)
     gives way to one reviewer plus an expert on doubt. The first 500 items cost 0.91 labels/item, not 1.27.
  3. trainer: a challenger model is kept out only when a paired test (one-sided McNemar, scipy's binomtest,
     alpha 0.05) on the shared held-out items shows it worse, not when it is 1 point less accurate there (the
     hard, human-checked items: 1-5 of 19 models trained on more labels were rejected per run before, 0-1 now).
  Before, seed 0: 98.5% at 0.434 (0.04), 98.0% at 0.388 (0.05), 96.3% at 0.346 (0.08); online 98.2% at 0.433
  (0.05), 98.6% at 0.522 (0.04).
Robustness (--check-seeds 1,2, ninety_team, other stream orders and team draws): met on both.
  Seed 1: labelmesh 98.3% at 0.441 (0.08); 98.4% at 0.465 (0.05), 98.2% at 0.455 (0.04). Before: 98.2% at 0.498
  (0.03), 97.9% at 0.444 (0.04), 97.1% at 0.363 (0.08): not met. Fixed frontier 98.2% at 0.656.
  Seed 2: labelmesh 98.2% at 0.439 (0.08), 98.3% at 0.452 (0.05). Before (a side run of the old code, not in a
  results file): 98.2% at 0.460 (0.05), 98.7% at 0.560 (0.04): not met. Fixed frontier 98.1% at 0.581.
  Across seeds 0-2 and targets 0.005-0.08 every labelmesh point is 98.2-98.7% (before: 96.3-98.9%).
  Seeds 0-4 at targets 0.05-0.08 (side runs 2026-12-03 15:20 and 17:19-17:30, --targets 0.06,0.07 / 0.05,0.08
  --online "" --check-seeds 3 / 1,2,4 / 4; not in the results file; seed 4 never ran before, seed 3 only at 15:20),
  accuracy at all labels per item, * where the goal is met:

  | seed | 0.05 | 0.06 | 0.07 | 0.08 |
  |---|---|---|---|---|
  | 0 | *98.4% at 0.422 | *98.35% at 0.415 | *98.26% at 0.404 | *98.3% at 0.404 |
  | 1 | 98.4% at 0.465 | *98.22% at 0.447 | 98.35% at 0.461 | *98.3% at 0.441 |
  | 2 | 98.3% at 0.452 | *98.28% at 0.449 | *98.24% at 0.444 | *98.2% at 0.439 |
  | 3 | 98.4% at 0.474 | 98.56% at 0.476 | *98.06% at 0.416 | 97.9% at 0.396 |
  | 4 | 98.6% at 0.525 | 98.21% at 0.458 | 98.24% at 0.466 | *98.24% at 0.446 |

  Met on every seed at one target or more, and on 4 of 5 at 0.08 (seed 3 misses by 0.1 accuracy point there);
  no single target meets it on all five. All 20 points are 97.9-98.6% at 0.396-0.525 labels/item: the goal's
  0.45 sits inside the spread from seed to seed (+-0.03 labels/item), not below it. The fixed frontier's only
  points >= 98% on seeds 3 and 4: 98.2% at 0.642 and 98.1% at 0.608.
default_team (with the drifter and the random clicker): labelmesh 98.35% at 0.427 labels/item (0.08), 98.4% at
0.454 (0.04), 98.4% at 0.468 (0.05), 98.5% at 0.494 (0.005); labelmesh_before 98.2% at 0.543; manual_double 98.2%
at 2.52; no fixed setting passes 95.8%. qc now also suspends on experts' verdicts on lone reviewers
(QcSettings.expert_agreement_*, services/qc/domain/verdicts.py): the random clicker is suspended at item 79 and
the drifter at items 3,332-3,814; before, on golden answers alone, the random clicker at items 4,100-5,208 and
the drifter in one run of seven. Before, per target 0.005/0.01/0.02/0.03/0.04/0.05/0.08: 98.6/98.5/98.5/98.5/
98.5/98.2/98.2% at 0.609/0.562/0.595/0.627/0.597/0.460/0.441 labels/item; now 98.5/98.5/98.8/98.7/98.4/98.4/
98.35% at 0.494/0.494/0.586/0.527/0.454/0.468/0.427, and $0.082-0.104 per item instead of $0.093-0.123.
Goal over the whole stream: met at target 0.08 on seeds 0, 1 and 2 (98.26% at 0.404, 98.26% at 0.441, 98.23% at
0.439) and at 0.05 on seed 0. The margin is thin: +0.2-0.3 accuracy points and 0.009-0.046 labels/item, about the
+-0.03 labels/item a point moves between neighbouring targets. The settings were chosen on side runs over
seeds 0-2 (auto_border_error 0.10/0.12/0.15, single floor 0.30/0.15/0.01), so seed 2 is no longer an unseen
check. Seed 3, run after the settings were fixed (a side run, not in quality.json): NOT met. 98.6% at 0.500
(0.04), 98.4% at 0.474 (0.05), 97.9% at 0.396 (0.08); the old code there: 98.7% at 0.592 (0.04), 98.6% at 0.559
(0.05), 97.9% at 0.415 (0.08). At target 0.08 only the 15% band holds the auto border, and on seed 3 the band
evidence let it drop from 0.95 to 0.85 at item 2,005 and stay (auto items at 0.85-0.90 ended 92% right): 0.15
permits ~10% wrong pre-labels at the border, and 0.10-0.12 cost 0.01-0.03 more labels/item in the side runs.
What limits it: single reviews of the 27-32% of items between the borders (ordinary labels 0.32-0.37 per item,
mostly those reviews) and their escalations to experts (0.068-0.081 per item; expert labels 0.085-0.100), the
weak first model (the first 2,000 items cost 0.63-0.69 labels/item), spot checks (5%, the
lowest rate spot_check allows) and golden answers (~0.02). The simulation's stand-ins are listed in
bench/quality_sim.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

try:
    from bench._common import (
        CACHE,
        RESULTS,
        cached_embeddings,
        environment,
        table,
        write_result,
    )
except ImportError:  # run as `python bench/quality.py`
    from _common import (
        CACHE,
        RESULTS,
        cached_embeddings,
        environment,
        table,
        write_result,
    )

from bench.quality_sim import (
    FixedThreshold,
    Labelmesh,
    ManualDouble,
    ManualSingle,
    ModelVersion,
    OnlineTrainer,
    OracleSchedule,
    Prices,
    Stream,
    labelled_neighbours,
    nearest_labelled_similarity,
    run,
)
from labelmesh.datasets import load
from labelmesh.ml.head import TrainedHead
from labelmesh.simulation import confusable_intents, default_team

GOAL_ACCURACY, GOAL_LABELS = 0.98, 0.45
SCHEDULE_CACHE = CACHE.parent / "quality"


def build_stream(X: np.ndarray, labels: list[str], ids: list[str], seed: int, bootstrap: int, golden: int,
                 items: int | None) -> Stream:
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)  # the same permutation labelmesh demo applies to its rows
    boot, gold, work = order[:bootstrap], order[bootstrap:bootstrap + golden], order[bootstrap + golden:]
    work = work[:items] if items else work
    pick = lambda idx: (X[idx], [labels[i] for i in idx], [ids[i] for i in idx])
    (bX, by, bi), (gX, gy, gi), (wX, wy, wi) = pick(boot), pick(gold), pick(work)
    return Stream(tuple(sorted(set(labels))), wi, wX, wy, bi, bX, by, gi, gX, gy)


def cached_schedule(stream: Stream, every: int, seed: int) -> OracleSchedule:
    """The oracle model schedule, heads stored as their own artifacts (labelmesh.head zip) under .cache/quality/."""
    key = hashlib.sha256(json.dumps([stream.ids, stream.boot_ids, stream.golden_ids, every, seed,
                                     float(stream.X.sum())]).encode()).hexdigest()[:16]
    folder = SCHEDULE_CACHE / key
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        versions = [ModelVersion.of(m["version"], m["start"],
                                    TrainedHead.from_bytes((folder / f"v{m['version']}.zip").read_bytes()),
                                    m["train_size"], stream) for m in meta]
        return OracleSchedule(versions)
    started = time.perf_counter()
    schedule = OracleSchedule.build(
        stream, every, seed=seed,
        on_version=lambda v, n: print(f"  model v{v} on {n} rows ({time.perf_counter() - started:.0f}s)", flush=True),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for v in schedule.by_start.values():
        (folder / f"v{v.version}.zip").write_bytes(v.head.to_bytes())
    meta_path.write_text(json.dumps([{"version": v.version, "start": v.start, "train_size": v.train_size}
                                     for v in schedule.by_start.values()]))
    return schedule


TEAMS = {
    "default_team": "labelmesh.simulation.default_team: five 88-92% annotators, a drifter (90% -> 40% after 150 "
                    "labels), a random clicker, two 97% experts",
    "ninety_team": "the same without the drifter and the random clicker: five 88-92% annotators, two 97% experts "
                   "(the issue's 'annotators about 90% accurate')",
}
VARIANTS = {
    # The services' defaults: bench/quality_sim.Labelmesh reads each from the service's settings class.
    "labelmesh": {},
    # The best policy before qc weighed reviewers against the model (labelmesh_confirm_step in the results of
    # 2026-11-28 09:04): confirm_single escalating every override, single band to 0.50, two annotators in the
    # multi tier, 8% spot checks, golden tasks at 5% throughout, the trainer's thresholds at every model, held-out
    # auto labels judging and calibrating models.
    "labelmesh_before": {"review_with_model": False, "target_single_error": 0.5, "single_floor": 0.5,
                         "multi_annotators": 2, "spot_check_rate": 0.08, "golden_settled_rate": 0.05,
                         "follow_trainer_thresholds": True, "confirm_single": True, "step_up_when_refuted": True,
                         "heldout_verified_only": False, "auto_border_error": None, "single_start": None,
                         "expert_agreement_threshold": 0.0},
    # qc's second_opinion: a doubted lone reviewer gets a second ordinary reviewer before an expert.
    "labelmesh_second_opinion": {"second_opinion": True},
}


def make_team(name: str, seed: int, similar: dict) -> list:
    team = default_team(seed, similar)
    if name == "ninety_team":
        team = [a for a in team if a.name not in ("ann-drifter", "ann-random")]
    return team


def pareto(points: list[dict]) -> list[dict]:
    """Points no other point beats on both accuracy (higher) and all human labels per item (lower), by effort."""
    ordered = sorted(points, key=lambda p: (p["all_human_labels_per_item"], -p["accuracy"]))
    front, best = [], -1.0
    for p in ordered:
        if p["accuracy"] > best:
            front.append(p)
            best = p["accuracy"]
    return front


def second_half(p: dict) -> tuple[float, float]:
    """Accuracy and all human labels per item over the second half of the stream (the models are stronger there)."""
    curve = p["curve"]
    if len(curve) < 2:
        return float("nan"), float("nan")
    (n1, a1, l1), (n2, a2, l2) = curve[len(curve) // 2 - 1], curve[-1]
    return (a2 * n2 - a1 * n1) / (n2 - n1), (l2 * n2 - l1 * n1) / (n2 - n1)


def meets_goal(p: dict) -> bool:
    return p["accuracy"] >= GOAL_ACCURACY and p["all_human_labels_per_item"] <= GOAL_LABELS


def min_labels_at(points: list[dict], accuracy: float) -> float | None:
    return min((p["all_human_labels_per_item"] for p in points if p["accuracy"] >= accuracy), default=None)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teams = list(summary["teams"])
    fig, axes = plt.subplots(len(teams), 2, figsize=(15, 6.5 * len(teams)), squeeze=False)
    for (ax, bx), team in zip(axes, teams):
        res = summary["teams"][team]
        for axis, xkey, xlabel in ((ax, "all_human_labels_per_item",
                                    "human labels per item (ordinary + expert + golden)"),
                                   (bx, "cost_per_label_usd", "cost per final label (USD)")):
            fixed = res["fixed_threshold"]
            axis.scatter([p[xkey] for p in fixed], [p["accuracy"] for p in fixed], s=12, c="0.75",
                         label="fixed threshold, (a, s) grid")
            front = sorted(pareto(fixed), key=lambda p: p[xkey])
            axis.plot([p[xkey] for p in front], [p["accuracy"] for p in front], "-o", c="0.3", ms=4,
                      label="fixed-threshold frontier")
            for name, style, colour in zip(VARIANTS, ("-s", "-D", "-^"), ("C0", "C1", "C2")):
                pts = sorted(res.get(name, []), key=lambda p: p[xkey])
                axis.plot([p[xkey] for p in pts], [p["accuracy"] for p in pts], style, ms=6, c=colour,
                          label=f"{name} (sweep of target auto error)")
                for p in pts:
                    axis.annotate(f"{p['params']['target_auto_error']:g}", (p[xkey], p["accuracy"]), fontsize=7,
                                  xytext=(4, -10), textcoords="offset points")
            for p in res.get("online", []):
                axis.scatter([p[xkey]], [p["accuracy"]], marker="*", s=220, zorder=5, edgecolors="k",
                             c=f"C{list(VARIANTS).index(p['variant'])}",
                             label=f"{p['variant']} {p['params']['target_auto_error']:g}, retrained on own labels")
            for name, marker, colour in (("manual_single", "v", "C3"), ("manual_double", "^", "C4")):
                p = res[name]
                axis.scatter([p[xkey]], [max(p["accuracy"], 0.851)], marker=marker, s=80, zorder=5, c=colour,
                             label=f"{name} ({p[xkey]:.2f}, {p['accuracy']:.3f})")
            axis.set_xlabel(xlabel)
            axis.set_ylabel("final-label accuracy vs BANKING77 labels")
            axis.grid(alpha=0.3)
            axis.set_ylim(0.85, 1.0)  # a point below is drawn on the floor; its legend entry has the value
            axis.set_title(team, fontsize=10)
        ax.axhline(GOAL_ACCURACY, ls=":", c="g")
        ax.axvline(GOAL_LABELS, ls=":", c="g")
        ax.fill_between([0, GOAL_LABELS], GOAL_ACCURACY, 1.0, color="g", alpha=0.08, label="goal (issue 9)")
        ax.set_xlim(0, 3.0)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def html(summary: dict, png: Path, tables: dict[str, list[list]], headers: list[str]) -> str:
    image = base64.b64encode(png.read_bytes()).decode()
    head = "".join(f"<th>{h}</th>" for h in headers)
    parts = []
    groups = {**summary["teams"], **summary.get("check_seeds", {})}
    for team, rows in tables.items():
        body = "".join("<tr>" + "".join(f"<td>{c:.4f}</td>" if isinstance(c, float) else f"<td>{c}</td>" for c in r)
                       + "</tr>" for r in rows)
        goal = groups[team]["goal"]
        parts.append(f"<h2>{team}</h2><p>{groups[team]['team']}</p><p><b>{goal['verdict']}</b></p>"
                     f"<table><tr>{head}</tr>{body}</table>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>labelmesh quality benchmark</title>
<style>body{{font-family:sans-serif;max-width:1250px;margin:2em auto}}td,th{{padding:2px 8px;text-align:right}}
table{{border-collapse:collapse;font-size:90%}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Quality benchmark</h1><p>{summary['setup']}</p><p><b>Goal</b> (issue 9): accuracy &ge; {GOAL_ACCURACY:.0%} at
&le; {GOAL_LABELS} human labels per item (ordinary + expert + golden answers) with ~90% accurate annotators.</p>
<p>{summary['notes']}</p>
<img src="data:image/png;base64,{image}" style="width:100%">{''.join(parts)}
<p>Full numbers: quality.json. Produced by bench/quality.py at {summary['environment']['when']}.</p></body></html>
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=None, help="stream items (default: all 9,443)")
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--golden", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain-every", type=int, default=500)
    ap.add_argument("--label-price", default="0.10")
    ap.add_argument("--expert-price", default="0.50")
    ap.add_argument("--teams", default=",".join(TEAMS))
    ap.add_argument("--targets", default="0.005,0.01,0.02,0.03,0.04,0.05,0.08", help="labelmesh target auto errors")
    ap.add_argument("--fixed-auto", default="0.80,0.85,0.90,0.93,0.95,0.97,0.99")
    ap.add_argument("--fixed-single", default="0.30,0.50,0.60,0.70,0.80,0.90")
    ap.add_argument("--online", default="ninety_team:labelmesh:0.05,ninety_team:labelmesh:0.04",
                    help="'team:variant:target,...' rerun with models retrained on the run's own final labels "
                         "(~19 fits each, ~5 min on 2 busy cores); empty to skip")
    ap.add_argument("--check-seeds", default="1",
                    help="other seeds (stream order, team, draws) for a robustness check of ninety_team: labelmesh "
                         "variants and the fixed frontier on oracle models; empty to skip")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--replot", action="store_true", help="only re-render the tables, plot and page from quality.json")
    ap.add_argument("--name", default="quality",
                    help="results name: bench/results/NAME.json/.png/.html (a partial sweep should not replace the full one)")
    args = ap.parse_args()
    if args.replot:
        report(json.loads((RESULTS / f"{args.name}.json").read_text()), args.name)
        return
    prices = Prices(Decimal(args.label_price), Decimal(args.expert_price))
    env = environment()

    from labelmesh.ml import load_encoder

    rows = load("train")
    encoder = load_encoder(args.encoder, device="cpu")
    X, seconds = cached_embeddings(encoder, "train", [r.text for r in rows])
    labels = [r.label for r in rows]
    print(f"embeddings {X.shape} ({'cached' if seconds is None else f'{seconds:.0f}s'})", flush=True)
    stream = build_stream(X, labels, [r.item_id for r in rows], args.seed, args.bootstrap, args.golden, args.items)
    similar = confusable_intents(X, labels)
    started = time.perf_counter()
    schedule = cached_schedule(stream, args.retrain_every, args.seed)
    schedule_seconds = time.perf_counter() - started
    nearest = nearest_labelled_similarity(stream)
    neighbours = labelled_neighbours(stream, Labelmesh().knn_k)
    print(f"model schedule ready ({schedule_seconds:.0f}s); {len(stream)} items to label", flush=True)

    world = (stream, nearest, neighbours, args.seed)

    def go(team: str, policy, models=schedule, variant: str | None = None, world=world) -> dict:
        t = time.perf_counter()
        stream_, nearest_, neighbours_, seed = world
        result = run(stream_, policy, make_team(team, seed, similar), models=models, nearest=nearest_,
                     neighbours=neighbours_, seed=seed)
        s = result.summary(prices) | {"variant": variant or policy.name, "curve": result.curve,
                                      "seconds": round(time.perf_counter() - t, 1)}
        print(f"  {team:12s} {s['variant']:17s} {json.dumps(s['params'])[:60]:60s} acc {s['accuracy']:.4f} "
              f"labels/item {s['all_human_labels_per_item']:.3f} ${s['cost_per_label_usd']:.3f}", flush=True)
        return s

    summary: dict = {"benchmark": "quality", "environment": env, "teams": {}}
    targets = [float(t) for t in args.targets.split(",")]
    for team in args.teams.split(","):
        res: dict = {"team": TEAMS[team]}
        res["manual_single"] = go(team, ManualSingle())
        res["manual_double"] = go(team, ManualDouble())
        for variant, overrides in VARIANTS.items():
            res[variant] = [go(team, Labelmesh(target_auto_error=t, **overrides), variant=variant) for t in targets]
        res["fixed_threshold"] = [
            go(team, FixedThreshold(a, s)) for a in map(float, args.fixed_auto.split(","))
            for s in map(float, args.fixed_single.split(",")) if s <= a
        ]
        summary["teams"][team] = res
    for seed in [int(x) for x in filter(None, args.check_seeds.split(","))]:
        other = build_stream(X, labels, [r.item_id for r in rows], seed, args.bootstrap, args.golden, args.items)
        other_schedule = cached_schedule(other, args.retrain_every, seed)
        other_world = (other, nearest_labelled_similarity(other), labelled_neighbours(other, Labelmesh().knn_k), seed)
        res = {"team": TEAMS["ninety_team"]}
        for variant, overrides in VARIANTS.items():
            res[variant] = [go("ninety_team", Labelmesh(target_auto_error=t, **overrides), other_schedule, variant,
                               other_world) for t in targets]
        res["fixed_threshold"] = [
            go("ninety_team", FixedThreshold(a, s), other_schedule, None, other_world)
            for a in map(float, args.fixed_auto.split(",")) for s in map(float, args.fixed_single.split(",")) if s <= a
        ]
        summary.setdefault("check_seeds", {})[f"ninety_team, seed {seed}"] = res
    finish(summary, args, stream, schedule_seconds)  # written now; each online point rewrites it when done
    for spec in filter(None, args.online.split(",")):
        team, variant, target = spec.split(":")
        trainer = OnlineTrainer(stream, args.retrain_every, seed=args.seed, first=schedule.by_start[0])
        point = go(team, Labelmesh(target_auto_error=float(target), **VARIANTS[variant]), trainer, variant)
        summary["teams"].setdefault(team, {}).setdefault("online", []).append(point)
        finish(summary, args, stream, schedule_seconds)


def finish(summary: dict, args: argparse.Namespace, stream: Stream, schedule_seconds: float) -> None:
    summary["setup"] = (f"BANKING77 train, seed {args.seed}: {len(stream.boot_ids)} bootstrap rows, "
                        f"{len(stream.golden_ids)} golden items, {len(stream)} streamed items; all-MiniLM-L6-v2 "
                        f"embeddings; retrained every {args.retrain_every} items; prices ${args.label_price} per "
                        f"label, ${args.expert_price} per expert label.")
    summary["notes"] = ("labelmesh = the services' defaults, read from their settings classes: qc weighs a lone "
                        "reviewer against the pre-label's calibrated top-k and keeps their label at posterior >= "
                        "0.85 (else an expert), the router's single band reaches down to 0.15 (target_single_error "
                        "0.5) and starts there, the auto border also needs the pre-labels just above it (a 0.05 "
                        "band) shown under 15% wrong, spot checks at 5%, golden tasks at 5% for an annotator's "
                        "first 400 tasks then 2%, annotators suspended on golden answers or when experts overturn "
                        "their escalated labels (upheld share shown below 40%), the trainer's thresholds only for "
                        "the first model, 3 annotators "
                        "in the multi tier, a challenger model kept out only when a paired test shows it worse. "
                        "labelmesh_before = the best policy of the previous results (labelmesh_confirm_step): "
                        "every override escalated, single band to 0.50, 2 in multi, 8% spot checks, golden at 5%, "
                        "the trainer's thresholds at every model, no border band. "
                        "Models in the sweep are retrained on true labels "
                        "(see the script's docstring); 'online' points retrain on the run's own final labels.")
    summary["schedule_seconds"] = schedule_seconds
    report(summary, args.name)


def report(summary: dict, name: str = "quality") -> None:
    """Goal verdicts, tables, quality.json, the plot and the HTML page, from a finished summary."""
    headers = ["policy", "knob", "accuracy", "human/item", "expert/item", "all/item", "golden/item", "$/label",
               "auto share", "escalations", "2nd half acc", "2nd half all/item"]

    def row(p: dict, knob: str) -> list:
        p["second_half_accuracy"], p["second_half_all_human_labels_per_item"] = second_half(p)
        return [p["variant"], knob, p["accuracy"], p["human_labels_per_item"], p["expert_labels_per_item"],
                p["all_human_labels_per_item"], p["golden_labels_per_item"], p["cost_per_label_usd"],
                p["tiers"].get("auto", 0.0), p["escalations"], p["second_half_accuracy"],
                p["second_half_all_human_labels_per_item"]]

    tables = {}
    groups = {**summary["teams"], **summary.get("check_seeds", {})}  # check seeds: robustness, no plot
    for team, res in groups.items():
        for p in res["fixed_threshold"]:
            p.pop("models", None)  # the same shared schedule 76 times over; labelmesh points keep theirs
        front = pareto(res["fixed_threshold"])
        labelmesh_points = [p for v in VARIANTS for p in res[v]] + res.get("online", [])
        meeting = [p for p in labelmesh_points if meets_goal(p)]
        res["fixed_frontier"] = [{"params": p["params"], "accuracy": p["accuracy"],
                                  "all_human_labels_per_item": p["all_human_labels_per_item"]} for p in front]
        res["goal"] = {
            "labelmesh_points_meeting_goal": [[p["variant"] + (" online" if p in res.get("online", []) else ""),
                                               p["params"]["target_auto_error"]] for p in meeting],
            "fixed_points_meeting_goal": [p["params"] for p in res["fixed_threshold"] if meets_goal(p)],
            "min_labels_at_98": {v: min_labels_at(res[v], GOAL_ACCURACY) for v in VARIANTS}
                                | {"fixed_threshold": min_labels_at(res["fixed_threshold"], GOAL_ACCURACY)},
            "min_labels_at_97": {v: min_labels_at(res[v], 0.97) for v in VARIANTS}
                                | {"fixed_threshold": min_labels_at(res["fixed_threshold"], 0.97)},
            "verdict": ("goal MET by " + ", ".join(
                f"{p['variant']}{' (online)' if p in res.get('online', []) else ''} at target "
                f"{p['params']['target_auto_error']:g}" for p in meeting)) if meeting else "goal NOT MET by labelmesh",
        }
        rows = [row(res[m], "-") for m in ("manual_single", "manual_double") if m in res]
        for v in VARIANTS:
            rows += [row(p, f"target={p['params']['target_auto_error']:g}") for p in res[v]]
        rows += [row(p, f"ONLINE target={p['params']['target_auto_error']:g}") for p in res.get("online", [])]
        rows += [row(p, f"frontier a={p['params']['auto_accept']:g} s={p['params']['single_review']:g}")
                 for p in front]
        tables[team] = rows
    summary.setdefault("load_average_at_end", os.getloadavg())
    path = write_result(name, summary)
    png = RESULTS / f"{name}.png"
    plot(summary, png)
    (RESULTS / f"{name}.html").write_text(html(summary, png, tables, headers))
    for team, rows in tables.items():
        goal = groups[team]["goal"]
        print(f"\n{team}: {groups[team]['team']}")
        print(table(headers, rows))
        print(f"{goal['verdict']}; fewest labels/item at >= 98%: {goal['min_labels_at_98']}; "
              f"at >= 97%: {goal['min_labels_at_97']}")
    print(f"\nwrote {path}, {png}, {RESULTS / f'{name}.html'}")


if __name__ == "__main__":
    sys.exit(main())
