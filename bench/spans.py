"""Span labelling on WNUT 2017, an offline simulation over the product's span rules (issue 24).

What runs is the product's code: the span tagger (labelmesh/ml/spans.py: MiniLM word states + logistic
regression, isotonic span and item calibration), the router's threshold learner (learn_thresholds, auto-accept
off until verified evidence backs a border), and qc's span rules (services/qc/domain/spans.py: the
reliability-weighted merge, span F1). What is simulated is the team and the event plumbing: items flow in
batches, and after each batch the tagger retrains on the human-checked final labels so far.

The team (rates per entity, chosen to resemble crowd NER on noisy text, where people miss entities more often
than they mis-type them): an annotator finds a missing entity with p_find, bounds it exactly with p_bound
(else one word too short or long), types it right with p_type, removes a wrong pre-labelled span with
p_remove, and keeps a correct pre-labelled span (anchoring helps here) with p_keep. Labelling by hand is the
same annotator starting from an empty draft.

Tiers: calibrated item confidence > auto border: accepted unseen; >= single border: one annotator corrects the
pre-label; below: two annotators correct it and qc merges them, an unresolved merge going to an expert.
An item is wrong when any span differs from the gold tags (exact match), the unit auto-accept error counts.

Run: python bench/spans.py [--bootstrap 300] [--batch 500] [--items N] [--name spans]; writes
bench/results/spans.json (or NAME.json). bench/spans_live.py runs `simulate` on its items beside the live run.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/spans.py`, or imported by bench/spans_live.py
    sys.path.insert(0, str(REPO))

from bench._common import CACHE, environment, table, write_result  # noqa: E402
from labelmesh.ml.spans import SpanExample, SpanTagger, WordFeatures, read_conll, words  # noqa: E402
from schemas.events import Thresholds  # noqa: E402
from schemas.spans import Span  # noqa: E402
from services.qc.domain.spans import corpus_f1, key, merge_spans  # noqa: E402
from services.router.domain.thresholds import AUTO_OFF, Observation, learn_thresholds  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "wnut17"
TYPES = ("person", "location", "group", "creative-work", "corporation", "product")
TARGET_AUTO_ERROR = 0.02
RELIABILITY = 0.85  # what qc's golden record would say of the ordinary annotators below


@dataclass(frozen=True)
class Annotator:
    name: str
    p_find: float
    p_bound: float
    p_type: float
    p_remove: float
    p_keep: float


TEAM = (Annotator("ann-0", 0.85, 0.90, 0.90, 0.85, 0.99), Annotator("ann-1", 0.80, 0.88, 0.88, 0.80, 0.99),
        Annotator("ann-2", 0.88, 0.92, 0.92, 0.85, 0.99), Annotator("ann-3", 0.75, 0.85, 0.85, 0.75, 0.98))
EXPERT = Annotator("expert", 0.95, 0.97, 0.97, 0.95, 1.0)


def _shifted(text: str, span: Span, rng: np.random.Generator) -> Span:
    """The span one word shorter or longer at one end, staying inside the text and on word boundaries."""
    offs = words(text)
    inside = [i for i, (s, e) in enumerate(offs) if s < span.end and e > span.start]
    first, last = inside[0], inside[-1]
    moves = []
    if last + 1 < len(offs):
        moves.append((first, last + 1))
    if first > 0:
        moves.append((first - 1, last))
    if last > first:
        moves.append((first, last - 1))
    if not moves:
        return span
    a, b = moves[rng.integers(len(moves))]
    return Span(start=offs[a][0], end=offs[b][1], label=span.label)


def annotate(who: Annotator, text: str, gold: tuple[Span, ...], draft: tuple[Span, ...],
             rng: np.random.Generator) -> tuple[Span, ...]:
    """What this annotator submits, starting from `draft` (the pre-label, or nothing when labelling by hand)."""
    gold_keys = {key(s) for s in gold}
    out: list[Span] = []
    for s in draft:
        if key(s) in gold_keys:
            if rng.random() < who.p_keep:
                out.append(Span(start=s.start, end=s.end, label=s.label))
        elif rng.random() >= who.p_remove:
            out.append(Span(start=s.start, end=s.end, label=s.label))
    have = {key(s) for s in out}
    for g in gold:
        if key(g) in have or rng.random() >= who.p_find:
            continue
        s = g if rng.random() < who.p_bound else _shifted(text, g, rng)
        if rng.random() >= who.p_type:
            s = Span(start=s.start, end=s.end, label=str(rng.choice([t for t in TYPES if t != g.label])))
        out = [o for o in out if o.end <= s.start or o.start >= s.end]  # a fix replaces what overlapped it
        out.append(s)
    return tuple(sorted(out, key=lambda s: s.start))


class CachedFeatures:
    """MiniLM word features of texts, cached under .cache/embeddings by content; the encoder loads only on a miss."""

    def __init__(self) -> None:
        self._extract: WordFeatures | None = None
        self.seconds = 0.0

    def __call__(self, name: str, examples: list[SpanExample]) -> list[np.ndarray]:
        digest = hashlib.sha256("\n".join(e.text for e in examples).encode()).hexdigest()[:16]
        path = CACHE / f"wnut17-{name}-words-{digest}.npz"
        if path.exists():
            data = np.load(path)
            return [data[f"a{i}"] for i in range(len(examples))]
        t0 = time.perf_counter()
        self._extract = self._extract or WordFeatures()
        out = self._extract([e.text for e in examples])
        self.seconds += time.perf_counter() - t0
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"a{i}": a for i, a in enumerate(out)})
        return out


def exact(a: tuple[Span, ...], b: tuple[Span, ...]) -> bool:
    return {key(s) for s in a} == {key(s) for s in b}


def wnut(seed: int) -> tuple[list[SpanExample], list[SpanExample], np.random.Generator]:
    """WNUT 2017 train in the seed's shuffled order, test as it is, and the generator the team draws from next."""
    rng = np.random.default_rng(seed)
    train, test = read_conll(DATA / "train.conll"), read_conll(DATA / "test.conll")
    order = rng.permutation(len(train))
    return [train[i] for i in order], test, rng


def simulate(train: list[SpanExample], train_x: list[np.ndarray], test: list[SpanExample],
             test_x: list[np.ndarray], *, bootstrap: int, batch: int, items: int, seed: int,
             rng: np.random.Generator) -> dict:
    """The offline run: `bootstrap` items of `train` by hand, then up to `items` more in batches with a retrain
    after each; its summary, tiers, models and checkpoints (bench/results/spans.json's fields)."""
    stream = list(range(bootstrap, len(train)))[: items or None]
    final: dict[int, tuple[Span, ...]] = {}
    checked: set[int] = set()  # items whose final label a human made (the training set)
    labels = {"ordinary": 0, "expert": 0}
    for i in range(bootstrap):  # the bootstrap: labelled by hand, one annotator each
        final[i] = annotate(TEAM[i % len(TEAM)], train[i].text, train[i].spans, (), rng)
        checked.add(i)
        labels["ordinary"] += 1

    thresholds = Thresholds(auto_accept=AUTO_OFF, single_review=0.70)
    evidence: list[Observation] = []
    models, checkpoints = [], []
    tier_items = {"auto": [], "single": [], "multi": [], "expert": []}
    for b in range(0, len(stream), batch):
        t0 = time.perf_counter()
        fit = sorted(checked)
        tagger = SpanTagger(TYPES, seed=seed).fit([train_x[i] for i in fit],
                                                  [SpanExample(train[i].text, final[i]) for i in fit])
        predicted = tagger.predict([e.text for e in test], test_x)
        model_f1 = corpus_f1([(p.spans, e.spans) for p, e in zip(predicted, test)])
        models.append({"version": len(models) + 1, "training_items": len(fit), "train_seconds":
                       round(time.perf_counter() - t0, 1), "test_f1": round(model_f1.f1, 4),
                       "test_precision": round(model_f1.precision, 4), "test_recall": round(model_f1.recall, 4)})
        part = stream[b:b + batch]
        predictions = tagger.predict([train[i].text for i in part], [train_x[i] for i in part])
        for n, (i, p) in enumerate(zip(part, predictions)):
            text, gold = train[i].text, train[i].spans
            draft = tuple(Span(start=s.start, end=s.end, label=s.label) for s in p.spans)
            if p.confidence > thresholds.auto_accept:
                final[i] = draft
                tier_items["auto"].append(i)
                continue
            if p.confidence >= thresholds.single_review:
                final[i] = annotate(TEAM[n % len(TEAM)], text, gold, draft, rng)
                labels["ordinary"] += 1
                tier_items["single"].append(i)
            else:
                pair = {TEAM[(n + k) % len(TEAM)].name: annotate(TEAM[(n + k) % len(TEAM)], text, gold, draft, rng)
                        for k in range(2)}
                labels["ordinary"] += 2
                merged = merge_spans(pair, {a: RELIABILITY for a in pair})
                if merged.resolved:
                    final[i] = merged.spans
                    tier_items["multi"].append(i)
                else:
                    final[i] = annotate(EXPERT, text, gold, draft, rng)
                    labels["expert"] += 1
                    tier_items["expert"].append(i)
            checked.add(i)
            # The router's evidence: was the pre-label what the humans settled on?
            evidence.append(Observation(p.confidence, exact(draft, final[i])))
        thresholds = learn_thresholds(evidence, thresholds, target_auto_error=TARGET_AUTO_ERROR,
                                      step_up_when_refuted=True).thresholds
        done = sorted(final)
        f1 = corpus_f1([(final[i], train[i].spans) for i in done])
        auto = tier_items["auto"]
        auto_wrong = sum(not exact(final[i], train[i].spans) for i in auto)
        checkpoints.append({
            "items": len(done), "final_f1": round(f1.f1, 4), "labels_per_item": round(
                (labels["ordinary"] + labels["expert"]) / len(done), 3),
            "auto_accepted": len(auto), "auto_accepted_error": round(auto_wrong / len(auto), 4) if auto else None,
            "thresholds": thresholds.model_dump(), "model_test_f1": models[-1]["test_f1"],
        })
        print(f"batch {len(checkpoints)}: {checkpoints[-1]}")

    items = sorted(final)
    # Baselines on the same items: one annotator by hand; two by hand merged by qc, an expert where unresolved.
    # Span edits by hand: every span an annotator marks on a blank text.
    single, double, double_labels, double_edits = [], [], 0, 0
    for n, i in enumerate(items):
        text, gold = train[i].text, train[i].spans
        single.append((annotate(TEAM[n % len(TEAM)], text, gold, (), rng), gold))
        pair = {TEAM[(n + k) % len(TEAM)].name: annotate(TEAM[(n + k) % len(TEAM)], text, gold, (), rng)
                for k in range(2)}
        merged = merge_spans(pair, {a: RELIABILITY for a in pair})
        double_labels += 2 + (not merged.resolved)
        expert = () if merged.resolved else annotate(EXPERT, text, gold, (), rng)
        double_edits += sum(len(a) for a in pair.values()) + len(expert)
        double.append((merged.spans if merged.resolved else expert, gold))
    f1 = corpus_f1([(final[i], train[i].spans) for i in items])
    auto = tier_items["auto"]
    tier_error = {t: {"items": len(ix), "item_error": round(
        sum(not exact(final[i], train[i].spans) for i in ix) / len(ix), 4) if ix else None}
        for t, ix in tier_items.items()}
    summary = {
        "items": len(items), "final_f1": round(f1.f1, 4), "final_precision": round(f1.precision, 4),
        "final_recall": round(f1.recall, 4),
        "ordinary_labels_per_item": round(labels["ordinary"] / len(items), 3),
        "expert_labels_per_item": round(labels["expert"] / len(items), 3),
        "human_labels_per_item": round((labels["ordinary"] + labels["expert"]) / len(items), 3),
        "auto_accepted_share": round(len(auto) / len(items), 4),
        "auto_accepted_error": tier_error["auto"]["item_error"], "target_auto_error": TARGET_AUTO_ERROR,
        "auto_within_target_at_every_checkpoint": all(
            c["auto_accepted_error"] is None or c["auto_accepted_error"] <= TARGET_AUTO_ERROR for c in checkpoints),
        "manual_single": {"f1": round(corpus_f1(single).f1, 4), "human_labels_per_item": 1.0,
                          "span_edits_per_item": round(sum(len(a) for a, _ in single) / len(items), 3)},
        "manual_double_with_expert": {"f1": round(corpus_f1(double).f1, 4),
                                      "human_labels_per_item": round(double_labels / len(items), 3),
                                      "span_edits_per_item": round(double_edits / len(items), 3)},
    }
    return {"summary": summary, "tiers": tier_error, "models": models, "checkpoints": checkpoints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", type=int, default=300, help="items labelled by hand before the first model")
    parser.add_argument("--batch", type=int, default=500, help="items per batch (a retrain after each)")
    parser.add_argument("--items", type=int, default=0, help="stream at most this many train items (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="spans", help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    started = time.perf_counter()
    train, test, rng = wnut(args.seed)
    train = train[: args.bootstrap + args.items if args.items else None]
    cached = CachedFeatures()
    train_x, test_x = cached("train", train), cached("test", test)
    if cached.seconds:
        print(f"word features for {len(train) + len(test)} texts in {cached.seconds:.0f} s (cached for next time)")
    run = simulate(train, train_x, test, test_x, bootstrap=args.bootstrap, batch=args.batch, items=args.items,
                   seed=args.seed, rng=rng)
    summary, models = run["summary"], run["models"]
    stream = len(train) - args.bootstrap
    payload = {
        "benchmark": "spans", "environment": environment(),
        "setup": (f"WNUT 2017: {args.bootstrap} train items labelled by hand, then {stream} more in batches of "
                  f"{args.batch} with a retrain after each; model F1 on all {len(test)} test.conll items; simulated "
                  f"team {[a.name for a in TEAM]} and an expert (rates in bench/spans.py); seed {args.seed}."),
        "goal": "set from this first measurement (issue 24): final F1 at or above manual single labelling at "
                "fewer human labels per item, auto-accepted item error within 2% at every checkpoint",
        **run, "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_result(args.name, payload)
    print(table(["", "F1", "labels/item"], [
        ["labelmesh", summary["final_f1"], summary["human_labels_per_item"]],
        ["manual single", summary["manual_single"]["f1"], 1.0],
        ["manual double + expert", summary["manual_double_with_expert"]["f1"],
         summary["manual_double_with_expert"]["human_labels_per_item"]],
    ]))
    print(table(["version", "training items", "test F1", "train s"],
                [[m["version"], m["training_items"], m["test_f1"], m["train_seconds"]] for m in models]))
    print(f"auto-accepted {summary['auto_accepted_share']:.1%} at item error {summary['auto_accepted_error']}; "
          f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
