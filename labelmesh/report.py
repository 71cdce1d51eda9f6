"""The demo's HTML report: what the pipeline did over time, drawn from the events its topics carried.

Pure functions of the event log (dicts as read from Kafka) and the dataset's truth, so the report is the
same whether it is drawn live after a demo or later from a replayed topic dump.
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from statsmodels.stats.proportion import proportion_confint

Events = Mapping[str, Sequence[Mapping[str, Any]]]
TIERS = ("auto", "single", "multi", "expert")


def _at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]))


def _start(log: Events) -> datetime | None:
    times = [_at(e) for events in log.values() for e in events if "occurred_at" in e]
    return min(times) if times else None


def tier_timeline(log: Events, work: set[str]) -> dict[str, list[tuple[float, int]]]:
    """Cumulative items per first tier, as (minutes since the first event, count) steps."""
    start = _start(log)
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    series: dict[str, list[tuple[float, int]]] = {tier: [] for tier in TIERS}
    for event in sorted(log.get("item.routed", ()), key=_at):
        item = event["item_id"]
        if item not in work or item in seen:
            continue
        seen.add(item)
        counts[event["tier"]] += 1
        series.setdefault(event["tier"], []).append(((_at(event) - start).total_seconds() / 60, counts[event["tier"]]))
    return series


def accuracy_vs_effort(log: Events, truth: Mapping[str, str], work: set[str]) -> list[tuple[float, float, int]]:
    """As final labels arrive: (human labels spent per finalised item, running accuracy, finalised items).

    Effort counts every human label on the work items submitted up to that moment (expert ones too), so
    the curve shows what each point of accuracy cost while the model was improving.
    """
    submitted = sorted((_at(e) for e in log.get("label.submitted", ()) if e["item_id"] in work))
    finals: dict[str, bool] = {}
    points: list[tuple[float, float, int]] = []
    cursor = 0
    for event in sorted(log.get("label.finalized", ()), key=_at):
        item = event["item_id"]
        if item not in work:
            continue
        finals[item] = event["label"] == truth[item]
        while cursor < len(submitted) and submitted[cursor] <= _at(event):
            cursor += 1
        points.append((cursor / len(finals), sum(finals.values()) / len(finals), len(finals)))
    return points


def effort_curve(log: Events, truth: Mapping[str, str], work: set[str]) -> list[tuple[float, float, int]]:
    """accuracy_vs_effort's points ordered by labels spent per item, so drawn as a line it never crosses itself.

    In time order labels per item rises and falls (a burst of reviews, then a run of auto labels), and the line
    doubled back over itself; ordered by spend, each point still says what accuracy the run had reached when it
    had spent that much per item.
    """
    return sorted(accuracy_vs_effort(log, truth, work), key=lambda p: (p[0], p[2]))


# Fixed auto-accept thresholds drawn as the fixed-threshold baseline (fixed_threshold_baseline).
FIXED_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)


def annotator_accuracy(log: Events, golden_truth: Mapping[str, str]) -> float | None:
    """Ordinary annotators' pooled accuracy on golden items: what labelling by hand, one label each, achieves."""
    marks = [e["label"] == golden_truth[e["item_id"]] for e in log.get("label.submitted", ())
             if e["item_id"] in golden_truth and e.get("role", "annotator") != "expert"]
    return sum(marks) / len(marks) if marks else None


def fixed_threshold_baseline(log: Events, truth: Mapping[str, str], work: set[str], single_accuracy: float,
                             thresholds: Sequence[float] = FIXED_THRESHOLDS) -> list[tuple[float, float, float]]:
    """(threshold, human labels per item, accuracy) of a fixed-threshold policy on this run's own pre-labels.

    Each work item's first pre-label (item.routed's top-k) is taken as is above the threshold and labelled by one
    annotator of single_accuracy at or below it: an estimate from the run's events, not a second run. Items
    routed without a pre-label count as labelled by hand.
    """
    first: dict[str, Mapping[str, Any]] = {}
    for event in sorted(log.get("item.routed", ()), key=_at):
        if event["item_id"] in work:
            first.setdefault(event["item_id"], event)
    if not first:
        return []
    top = {i: max(e.get("top_k") or [], key=lambda s: s["probability"], default=None) for i, e in first.items()}
    out = []
    for t in thresholds:
        auto = [i for i, s in top.items() if s is not None and s["probability"] > t]
        right = sum(top[i]["label"] == truth[i] for i in auto)  # type: ignore[index]
        by_hand = len(first) - len(auto)
        out.append((t, by_hand / len(first), (right + single_accuracy * by_hand) / len(first)))
    return sorted(out, key=lambda p: p[1])


def checkpoints(log: Events, truth: Mapping[str, str], work: set[str], golden_truth: Mapping[str, str],
                every: int) -> list[dict[str, Any]]:
    """Every `every` finalised work items (time order), what the run had reached and spent so far.

    Labels count everything a person was paid for up to that moment: ordinary and expert labels on work items
    and golden answers. auto_* are the final labels that are an unchecked auto label (provenance auto), the
    router's guarantee checked at each point. A re-finalised item counts with its latest label.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    submitted = sorted(((_at(e), e) for e in log.get("label.submitted", ())
                        if e["item_id"] in work or e["item_id"] in golden_truth), key=lambda p: p[0])
    finals: dict[str, Mapping[str, Any]] = {}
    spent: Counter[str] = Counter()
    cursor, points = 0, []
    events = sorted((e for e in log.get("label.finalized", ()) if e["item_id"] in work), key=_at)
    for n, event in enumerate(events, 1):
        finals[event["item_id"]] = event
        while cursor < len(submitted) and submitted[cursor][0] <= _at(event):
            e = submitted[cursor][1]
            spent["golden" if e["item_id"] in golden_truth else e.get("role", "annotator")] += 1
            cursor += 1
        if len(finals) % every and n != len(events):
            continue
        if points and points[-1]["items"] == len(finals):
            continue
        auto = [i for i, f in finals.items() if f.get("provenance") == "auto"]
        k = len(finals)
        points.append({
            "items": k,
            "accuracy": sum(f["label"] == truth[i] for i, f in finals.items()) / k,
            "ordinary_labels_per_item": spent["annotator"] / k,
            "expert_labels_per_item": spent["expert"] / k,
            "golden_labels_per_item": spent["golden"] / k,
            "all_human_labels_per_item": sum(spent.values()) / k,
            "auto_accepted": len(auto),
            "auto_accepted_errors": sum(finals[i]["label"] != truth[i] for i in auto),
        })
    return points


def tier_errors(log: Events, truth: Mapping[str, str], work: set[str]) -> dict[str, dict[str, float]]:
    """Per first tier: items, wrong final labels and their share."""
    first: dict[str, str] = {}
    for event in sorted(log.get("item.routed", ()), key=_at):
        if event["item_id"] in work:
            first.setdefault(event["item_id"], event["tier"])
    final = {e["item_id"]: e["label"] for e in sorted(log.get("label.finalized", ()), key=_at) if e["item_id"] in work}
    out: dict[str, dict[str, float]] = {}
    for tier in sorted(set(first.values())):
        items = [i for i, t in first.items() if t == tier and i in final]
        wrong = sum(final[i] != truth[i] for i in items)
        out[tier] = {"items": len(items), "errors": wrong, "error": wrong / len(items) if items else math.nan}
    return out


def golden_accuracy(log: Events, golden_truth: Mapping[str, str]) -> dict[str, tuple[int, int, float, float]]:
    """Per annotator: (correct, answered, Wilson 95% low, high) on golden items."""
    answers: dict[str, list[bool]] = defaultdict(list)
    for event in log.get("label.submitted", ()):
        if event["item_id"] in golden_truth:
            answers[event["annotator_id"]].append(event["label"] == golden_truth[event["item_id"]])
    out = {}
    for who, marks in sorted(answers.items()):
        low, high = proportion_confint(sum(marks), len(marks), alpha=0.05, method="wilson")
        rate = sum(marks) / len(marks)
        # Wilson's bound at 20 of 20 is 0.9999999999999999: the interval must still hold the rate (the
        # plot's error bars are rate - low and high - rate, and a negative one stopped the demo's report).
        out[who] = (sum(marks), len(marks), min(float(low), rate), max(float(high), rate))
    return out


def flag_timeline(log: Events) -> list[tuple[float, str, str, str]]:
    """(minutes since start, kind, subject id, message) for every qc flag."""
    start = _start(log)
    return [((_at(e) - start).total_seconds() / 60, e["kind"], e["subject_id"], e.get("message", ""))
            for e in sorted(log.get("qc.flagged", ()), key=_at)]


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def render_plots(log: Events, truth: Mapping[str, str], work: set[str],
                 golden_truth: Mapping[str, str]) -> dict[str, str]:
    """Each plot as a base64 PNG, keyed by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for tier, steps in tier_timeline(log, work).items():
        if steps:
            ax.step([0] + [t for t, _ in steps], [0] + [n for _, n in steps], where="post", label=tier)
    ax.set(xlabel="minutes since start", ylabel="items routed (cumulative)", title="Items per tier over time")
    ax.legend()
    plots["tiers"] = _png(fig)
    plt.close(fig)

    points = effort_curve(log, truth, work)
    single = annotator_accuracy(log, golden_truth)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue", linewidth=1.2,
                label="labelmesh (accuracy reached at each spend)")
        last = accuracy_vs_effort(log, truth, work)[-1]
        ax.plot([last[0]], [last[1]], marker="*", markersize=12, color="tab:blue", linestyle="none",
                label=f"labelmesh final: {last[1]:.1%} at {last[0]:.2f}")
    if single is not None:
        ax.plot([1.0], [single], marker="s", color="tab:red", linestyle="none",
                label=f"manual single (golden accuracy {single:.1%})")
        fixed = fixed_threshold_baseline(log, truth, work, single)
        if fixed:
            ax.plot([p[1] for p in fixed], [p[2] for p in fixed], marker="o", markersize=3, color="tab:grey",
                    linestyle="--", label="fixed threshold 0.5-0.99 (this run's pre-labels)")
    ax.axhline(0.98, color="grey", linestyle=":", label="98% goal")
    ax.set(xlabel="human labels per item (ordinary + expert)", ylabel="final-label accuracy",
           title="Accuracy vs human labels spent")
    ax.legend(fontsize=7, loc="lower right")
    plots["accuracy"] = _png(fig)
    plt.close(fig)

    models = log.get("model.updated", ())
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    versions = [f"v{m['model_version']}\n(n={m['training_set_size']})" for m in models]
    accuracy = [m.get("heldout_metrics", {}).get("heldout_accuracy", math.nan) for m in models]
    ax.bar(versions, accuracy, color="tab:green")
    ax.set(ylim=(0, 1), ylabel="held-out accuracy", title="Model versions (promoted)")
    plots["models"] = _png(fig)
    plt.close(fig)

    golden = golden_accuracy(log, golden_truth)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = list(golden)
    rates = [c / n for c, n, _, _ in golden.values()]
    errors = [[r - lo for r, (_, _, lo, _) in zip(rates, golden.values())],
              [hi - r for r, (_, _, _, hi) in zip(rates, golden.values())]]
    ax.bar(names, rates, yerr=errors if names else None, capsize=3, color="tab:orange")
    ax.set(ylim=(0, 1.05), ylabel="golden accuracy (95% CI)", title="Per-annotator golden accuracy")
    ax.tick_params(axis="x", rotation=30)
    plots["golden"] = _png(fig)
    plt.close(fig)

    flags = flag_timeline(log)
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    kinds = sorted({kind for _, kind, _, _ in flags})
    for row, kind in enumerate(kinds):
        times = [t for t, k, _, _ in flags if k == kind]
        ax.scatter(times, [row] * len(times), marker="|", s=200)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set(xlabel="minutes since start", title=f"Flags raised ({len(flags)})")
    plots["flags"] = _png(fig)
    plt.close(fig)
    return plots


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labelmesh demo report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; } td, th { padding: .25rem .75rem; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
</style></head><body>
<h1>labelmesh demo: {{ title }}</h1>
<p>{{ summary["items"] }} items through the pipeline; every number below is computed from the events on the
topics (namespace <code>{{ namespace }}</code>) against the dataset's own labels.</p>
<table>
{% for key, value in headline %}<tr><th align="left">{{ key }}</th><td class="num">{{ value }}</td></tr>
{% endfor %}</table>
<div class="grid">
<figure><img alt="items per tier over time" src="data:image/png;base64,{{ plots.tiers }}"></figure>
<figure><img alt="accuracy vs human labels" src="data:image/png;base64,{{ plots.accuracy }}"></figure>
<figure><img alt="model versions" src="data:image/png;base64,{{ plots.models }}"></figure>
<figure><img alt="golden accuracy" src="data:image/png;base64,{{ plots.golden }}"></figure>
</div>
<figure><img alt="flags over time" src="data:image/png;base64,{{ plots.flags }}"></figure>
<h2>Flags</h2>
<table><tr><th>minute</th><th>kind</th><th>subject</th><th>message</th></tr>
{% for t, kind, subject, message in flags %}<tr><td class="num">{{ "%.1f"|format(t) }}</td><td>{{ kind }}</td>
<td>{{ subject }}</td><td>{{ message }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def write_html(path: Path, summary: Mapping[str, Any], log: Events, truth: Mapping[str, str],
               work: Sequence[str], golden_truth: Mapping[str, str], *, namespace: str,
               title: str = "BANKING77 with a simulated team") -> Path:
    """Render the report page (plots embedded, one self-contained file) and return its path."""
    plots = render_plots(log, truth, set(work), golden_truth)
    headline = [(k, _fmt(v)) for k, v in summary.items() if not isinstance(v, list)]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(TEMPLATE).render(title=title, summary=summary, headline=headline, plots=plots,
                                            flags=flag_timeline(log), namespace=namespace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return path
