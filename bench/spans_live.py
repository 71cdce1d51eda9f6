"""WNUT 2017 through the five live services, with bench/spans.py's simulated team over gRPC (issue 24).

What runs: the five real service processes (labelmesh.stack, as bench/live_quality.py runs them) on the shared
Kafka and FerretDB in a namespace of their own, the MiniLM encoder, and a spans project configured with
WNUT's six entity types and two annotators per consensus item (bench/spans.py's pairs). The team is
bench/spans.py's (its rates and `annotate`): each annotator leases a task, corrects the spans it shows (none on
a cold item) and submits them; the expert does the same on the items qc or the router sends to experts.

The order of items is bench/spans.py's (its seed's shuffle of train.conll): the first --bootstrap items are
ingested with no model, so the router sends each to two annotators from scratch (offline: one each); once the
trainer's first model is served, the next --items come in batches of --batch, each batch ingested when the
previous one has its final labels and the trainer has run on them (the trainer retrains every --batch labels),
so each batch meets the newest model as offline.

It reports
- entity-level F1 (exact match, micro) of the final labels against the gold tags, overall and per first tier;
- human actions per item: submissions (ordinary, expert) and span edits (spans added or removed against what
  the task showed) against labelling every item by hand (bench/spans.py's manual single baseline on the same
  items: one submission, every entity marked from blank);
- auto-accepted item error (an item is wrong if any span differs) against the project's target at each batch;
- each trained model version's F1 on test.conll (from the trainer's stored artifacts);
- the offline simulation (bench/spans.py's `simulate`) on the same items and batches, for comparison, and the
  goal set from the first run (GOAL_F1_GAP, GOAL_LABELS_GAP: live lands where offline does).
Kafka and FerretDB must be running. Writes bench/results/spans_live.json (or --name).

Run: python bench/spans_live.py [--bootstrap 100] [--items 300] [--batch 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._common import environment, table, write_result  # noqa: E402
from bench.spans import EXPERT, TARGET_AUTO_ERROR, TEAM, TYPES, Annotator, CachedFeatures, annotate, exact  # noqa: E402
from bench.spans import simulate, wnut  # noqa: E402
from labelmesh.client import GatewayClient  # noqa: E402
from labelmesh.demo import EventLog  # noqa: E402
from labelmesh.infra import create_topics  # noqa: E402
from labelmesh.ml.spans import HASHING_WORDS, HashingWordFeatures, SpanExample, SpanTagger  # noqa: E402
from labelmesh.runtime.settings import CommonSettings  # noqa: E402
from labelmesh.stack import Stack  # noqa: E402
from schemas.rpc import gateway_pb2 as pb  # noqa: E402
from schemas.spans import Span  # noqa: E402
from services.qc.domain.spans import corpus_f1, key  # noqa: E402
from services.trainer.domain.lineage import in_holdout  # noqa: E402
from services.trainer.settings import TrainerSettings  # noqa: E402

PROJECT = "wnut17"
PORT_OFFSET, GRPC_PORT = 260, 50461  # beside the default stack and the tests' (labelmesh.stack)
TOPICS = ["item.routed", "label.submitted", "label.finalized", "model.updated", "qc.flagged", "deadletter"]


def spans_of(rows: Any) -> tuple[Span, ...]:
    """Spans from an event's (or a task's) span dicts or messages, confidence dropped."""
    out = []
    for s in rows or ():
        start, end, label = (s["start"], s["end"], s["label"]) if isinstance(s, dict) else (s.start, s.end, s.label)
        out.append(Span(start=start, end=end, label=label))
    return tuple(sorted(out, key=lambda s: s.start))


def span_edits(shown: tuple[Span, ...], answer: tuple[Span, ...]) -> int:
    """Spans added or removed against what was shown (a moved boundary or a retype: one removed, one added)."""
    return len({key(s) for s in shown} ^ {key(s) for s in answer})


@dataclass
class Team:
    """What the simulated people did, counted as they did it."""

    counts: Counter[str] = field(default_factory=Counter)
    edits: Counter[str] = field(default_factory=Counter)  # item -> span edits over all its submissions

    async def work(self, client: GatewayClient, who: Annotator, gold: dict[str, SpanExample],
                   rng: np.random.Generator, stop: asyncio.Event) -> None:
        """One person working through their queue over gRPC, as bench/live_quality.py's team does."""
        while not stop.is_set():
            try:
                task = await client.lease(PROJECT)
                if task is None:
                    await asyncio.sleep(0.3)
                    continue
                example = gold[task.item_id]
                shown = spans_of(task.spans)
                answer = annotate(who, task.text, example.spans, shown, rng)
                await client.submit(task.task_id, "", key=task.task_id, time_spent_ms=1500,
                                    spans=[pb.Span(start=s.start, end=s.end, label=s.label) for s in answer])
                self.counts["expert" if who is EXPERT else "ordinary"] += 1
                self.edits[task.item_id] += span_edits(shown, answer)
            except grpc.aio.AioRpcError as exc:
                self.counts[f"refused {exc.code().name}"] += 1
                if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                    return  # suspended by qc
                await asyncio.sleep(1.0)


def latest_finals(log: EventLog) -> dict[str, dict[str, Any]]:
    """item -> its newest label.finalized event."""
    out: dict[str, dict[str, Any]] = {}
    for e in log.by_topic["label.finalized"]:
        if e.get("project") == PROJECT and e["version"] >= out.get(e["item_id"], {}).get("version", 0):
            out[e["item_id"]] = e
    return out


async def wait_finals(log: EventLog, want: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not want <= set(latest_finals(log)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(want - set(latest_finals(log)))} of {len(want)} items without a final label")
        await asyncio.sleep(0.5)


async def trainer_runs(db: Any) -> list[dict[str, Any]]:
    return [d async for d in db["models"].find({"project": PROJECT}, sort=[("version", 1)])]


async def wait_run(db: Any, after: int, timeout: float) -> bool:
    """Whether the trainer registered a run (promoted or not) beyond the first `after` within `timeout`."""
    deadline = time.monotonic() + timeout
    while len(await trainer_runs(db)) <= after:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(1.0)
    return True


def served_version(port: int) -> int:
    """The model version the prelabeler serves for the project (its labelmesh_prelabeler_model_version gauge)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("labelmesh_prelabeler_model_version{") and f'project="{PROJECT}"' in line:
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def wait_served(stack: Stack, runs: list[dict[str, Any]], timeout: float) -> int | None:
    """The newest promoted version, once the prelabeler serves it (so the next batch meets it)."""
    version = max((r["version"] for r in runs if r.get("promoted")), default=None)
    if version is None:
        return None
    deadline = time.monotonic() + timeout
    port = stack.processes["prelabeler"].port
    while await asyncio.to_thread(served_version, port) < version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the prelabeler did not serve model v{version} within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return version


def first_tiers(log: EventLog) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in log.by_topic["item.routed"]:
        if e.get("project") == PROJECT:
            out.setdefault(e["item_id"], e["tier"])
    return out


def checkpoint(log: EventLog, gold: dict[str, SpanExample], done: list[str], work: set[str],
               model_version: int | None) -> dict[str, Any]:
    finals = latest_finals(log)
    items = [i for i in done if i in finals]
    f1 = corpus_f1([(spans_of(finals[i]["spans"]), gold[i].spans) for i in items])
    submitted = [e for e in log.by_topic["label.submitted"] if e.get("project") == PROJECT and e["item_id"] in
                 set(items)]
    auto = [i for i in items if i in work and finals[i]["provenance"] == "auto"]
    wrong = sum(not exact(spans_of(finals[i]["spans"]), gold[i].spans) for i in auto)
    routed = [e for e in log.by_topic["item.routed"] if e.get("project") == PROJECT]
    error = wrong / len(auto) if auto else None
    return {"items": len(items), "final_f1": round(f1.f1, 4), "labels_per_item": round(len(submitted) / len(items), 3),
            "auto_accepted": len(auto), "auto_accepted_error": None if error is None else round(error, 4),
            "auto_within_target": error is None or error <= TARGET_AUTO_ERROR,
            "thresholds": routed[-1]["thresholds"] if routed else None, "model_version_serving": model_version}


async def run_live(args: argparse.Namespace, train: list[SpanExample]) -> dict[str, Any]:
    base = CommonSettings()
    namespace = f"spans{int(time.time())}"
    prefix = f"{namespace}."
    admin = secrets.token_urlsafe(16)
    ids = [f"w{i}" for i in range(len(train))]
    gold = dict(zip(ids, train))
    boot, work = ids[:args.bootstrap], ids[args.bootstrap:]
    # The trainer counts the labels it trains on, not those it holds out (its holdout_fraction, by item): the
    # first model waits for every bootstrap item it will train on, and each batch brings a retrain due.
    fraction = TrainerSettings().holdout_fraction
    trained = lambda batch: sum(not in_holdout(PROJECT, i, fraction) for i in batch)  # noqa: E731
    first_min = trained(boot)
    every = min(trained(work[b:b + args.batch]) for b in range(0, len(work), args.batch))
    out_dir = REPO / "var" / "bench" / namespace
    await create_topics(base.kafka_bootstrap, prefix)
    stack = Stack(env={
        "LABELMESH_NAMESPACE": namespace, "LABELMESH_TOPIC_PREFIX": prefix,
        "LABELMESH_KAFKA_BOOTSTRAP": base.kafka_bootstrap, "LABELMESH_MONGO_URI": base.mongo_uri,
        "LABELMESH_PRELABELER_ENCODER": args.encoder, "LABELMESH_GATEWAY_ADMIN_TOKEN": admin,
        "LABELMESH_TRAINER_FIRST_MODEL_MIN": str(first_min), "LABELMESH_TRAINER_RETRAIN_EVERY": str(every),
        "LABELMESH_GATEWAY_GOLDEN_RATE": "0.0", **dict(kv.split("=", 1) for kv in args.env)},
        log_dir=out_dir / "logs", port_offset=PORT_OFFSET,
        grpc_port=GRPC_PORT)
    log, stop_log, stop_team = EventLog(), asyncio.Event(), asyncio.Event()
    team = Team()
    from pymongo import AsyncMongoClient

    mongo = AsyncMongoClient(base.mongo_uri)
    trainer_db = mongo[f"{namespace}_trainer"]
    started = time.monotonic()
    print(f"namespace {namespace}: starting the services ({args.encoder} encoder)")
    await stack.start_all()
    follower = asyncio.create_task(log.follow(base.kafka_bootstrap, prefix, TOPICS, stop_log))
    client = GatewayClient.balanced(stack.grpc_ports, admin)
    checkpoints: list[dict[str, Any]] = []
    try:
        await client.configure_project(PROJECT, list(TYPES), guidelines="Mark the emerging named entities.",
                                       task_type="spans", multi_annotators=2, target_auto_error=TARGET_AUTO_ERROR)
        people = [*TEAM, EXPERT]
        tokens = {a.name: await client.create_annotator(a.name, "expert" if a is EXPERT else "annotator")
                  for a in people}
        workers = [asyncio.create_task(team.work(client.as_user(tokens[a.name]), a, gold,
                                                 np.random.default_rng([args.seed, n]), stop_team))
                   for n, a in enumerate(people)]

        async def ingest(batch: list[str]) -> None:
            await client.ingest_items([pb.IngestItem(project=PROJECT, item_id=i, text=gold[i].text, source="bench")
                                       for i in batch])

        await ingest(boot)
        await wait_finals(log, set(boot), args.timeout)
        if not await wait_run(trainer_db, 0, args.model_wait):
            raise TimeoutError("no first model")
        done = list(boot)
        for b in range(0, len(work), args.batch):
            runs = await trainer_runs(trainer_db)
            serving = await wait_served(stack, runs, args.model_wait)
            batch = work[b:b + args.batch]
            await ingest(batch)
            await wait_finals(log, set(batch), args.timeout)
            done += batch
            checkpoints.append(checkpoint(log, gold, done, set(work), serving))
            print(f"batch {len(checkpoints)}: {checkpoints[-1]}", flush=True)
            # After the last batch too: the model trained on every final label is measured on test.conll.
            if not await wait_run(trainer_db, len(runs), args.model_wait):
                print(f"no training run within {args.model_wait:.0f} s after batch {len(checkpoints)}")
        stop_team.set()
        await asyncio.gather(*workers, return_exceptions=True)
        runs = await trainer_runs(trainer_db)
        artifacts = await artifacts_of(trainer_db, runs)
    finally:
        stop_log.set()
        await follower
        await client.close()
        codes = stack.stop_all()
        await mongo.close()
    return {"namespace": namespace, "pipeline_seconds": round(time.monotonic() - started, 1), "log": log,
            "team": team, "gold": gold, "boot": boot, "work": work, "checkpoints": checkpoints, "runs": runs,
            "artifacts": artifacts, "exit_codes": codes}


async def artifacts_of(db: Any, runs: list[dict[str, Any]]) -> dict[int, bytes]:
    from gridfs import AsyncGridFSBucket

    bucket = AsyncGridFSBucket(db, bucket_name="artifacts")
    out = {}
    for r in runs:
        stream = await bucket.open_download_stream(r["artifact_id"])
        out[r["version"]] = await stream.read()
    return out


def summarise(live: dict[str, Any]) -> dict[str, Any]:
    log, team, gold = live["log"], live["team"], live["gold"]
    finals, tiers = latest_finals(log), first_tiers(log)
    work, every = live["work"], live["boot"] + live["work"]
    submitted = [e for e in log.by_topic["label.submitted"] if e.get("project") == PROJECT]

    def per_item(ids: list[str]) -> dict[str, Any]:
        ix = set(ids)
        subs = [e for e in submitted if e["item_id"] in ix]
        expert = sum(e["role"] == "expert" for e in subs)
        f1 = corpus_f1([(spans_of(finals[i]["spans"]), gold[i].spans) for i in ids if i in finals])
        return {"items": len(ids), "final_labels": sum(i in finals for i in ids), "final_f1": round(f1.f1, 4),
                "final_precision": round(f1.precision, 4), "final_recall": round(f1.recall, 4),
                "ordinary_labels_per_item": round((len(subs) - expert) / len(ids), 3),
                "expert_labels_per_item": round(expert / len(ids), 3),
                "human_labels_per_item": round(len(subs) / len(ids), 3),
                "span_edits_per_item": round(sum(team.edits[i] for i in ids) / len(ids), 3)}

    by_tier: dict[str, list[str]] = {}
    for i in work:
        by_tier.setdefault(tiers.get(i, "unrouted"), []).append(i)
    auto = [i for i in work if i in finals and finals[i]["provenance"] == "auto"]
    return {
        "all_items": per_item(every), "work_items": per_item(work),
        "tiers": {t: {"items": len(ix), "item_error": round(sum(
            not exact(spans_of(finals[i]["spans"]), gold[i].spans) for i in ix if i in finals) / len(ix), 4)}
            for t, ix in sorted(by_tier.items())},
        "provenance": dict(Counter(finals[i]["provenance"] for i in every if i in finals)),
        "auto_accepted": len(auto), "target_auto_error": TARGET_AUTO_ERROR,
        "auto_within_target_at_every_checkpoint": all(c["auto_within_target"] for c in live["checkpoints"]),
        "team": dict(team.counts), "flags": dict(Counter(f["kind"] for f in log.by_topic["qc.flagged"])),
        "dead_letters": len(log.by_topic["deadletter"]),
    }


# The goal, set from the first live measurement (400 items, bench/results/spans_live.json): the live services
# land where the offline simulation of the same items does, F1 within 0.03 at labels per item within 0.1, with
# auto-accepted items within the target error at every batch.
GOAL_F1_GAP, GOAL_LABELS_GAP = 0.03, 0.1


def goal(summary: dict[str, Any], offline: dict[str, Any]) -> dict[str, Any]:
    live, off = summary["all_items"], offline["summary"]
    f1_gap = round(live["final_f1"] - off["final_f1"], 4)
    labels_gap = round(live["human_labels_per_item"] - off["human_labels_per_item"], 3)
    return {"f1_gap_to_offline": f1_gap, "labels_per_item_gap_to_offline": labels_gap,
            "met": abs(f1_gap) <= GOAL_F1_GAP and abs(labels_gap) <= GOAL_LABELS_GAP
            and summary["auto_within_target_at_every_checkpoint"],
            "rule": f"|F1 - offline F1| <= {GOAL_F1_GAP}, |labels/item - offline| <= {GOAL_LABELS_GAP}, "
                    f"auto-accepted error within target at every batch"}


def models_on_test(live: dict[str, Any], test: list[SpanExample], test_x: list[np.ndarray]) -> list[dict[str, Any]]:
    """Each trained version's F1 on test.conll, on the word features it was trained on (MiniLM's: test_x)."""
    out = []
    for run in live["runs"]:
        tagger = SpanTagger.from_bytes(live["artifacts"][run["version"]])
        feats = HashingWordFeatures()([e.text for e in test]) if tagger.features == HASHING_WORDS else test_x
        predicted = tagger.predict([e.text for e in test], feats)
        f1 = corpus_f1([(p.spans, e.spans) for p, e in zip(predicted, test)])
        metrics = run.get("metrics", {})
        out.append({"version": run["version"], "promoted": bool(run.get("promoted")),
                    "training_set_size": int(metrics.get("train_size", 0)),
                    "heldout_span_f1": metrics.get("heldout_span_f1"),
                    "test_f1": round(f1.f1, 4), "test_precision": round(f1.precision, 4),
                    "test_recall": round(f1.recall, 4), "reason": run.get("reason")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", type=int, default=100, help="items labelled with no model (the cold start)")
    ap.add_argument("--items", type=int, default=300, help="work items after the bootstrap")
    ap.add_argument("--batch", type=int, default=100, help="items per batch; the trainer retrains every this many")
    ap.add_argument("--seed", type=int, default=0, help="bench/spans.py's shuffle and the team's draws")
    ap.add_argument("--encoder", default="minilm", help="minilm (the real encoder) or hashing (fast stub)")
    ap.add_argument("--timeout", type=float, default=900.0, help="longest wait for one batch's final labels")
    ap.add_argument("--model-wait", type=float, default=240.0, help="longest wait for a training run after a batch")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="a further LABELMESH_* setting for every service (repeatable)")
    ap.add_argument("--name", default="spans_live")
    args = ap.parse_args()
    env = environment()
    started = time.perf_counter()
    train, test, rng = wnut(args.seed)
    train = train[:args.bootstrap + args.items]
    live = asyncio.run(run_live(args, train))
    cached = CachedFeatures()  # MiniLM word features (the offline run and the test set), cached across runs
    test_x = cached("test", test)
    models = models_on_test(live, test, test_x)
    summary = summarise(live)
    offline = simulate(train, cached("train", train), test, test_x, bootstrap=args.bootstrap, batch=args.batch,
                       items=args.items, seed=args.seed, rng=rng)
    settings = f" with {', '.join(args.env)}" if args.env else ""
    payload = {
        "benchmark": "spans_live", "environment": env,
        "setup": (f"WNUT 2017 train in bench/spans.py's seed-{args.seed} order: {args.bootstrap} items cold (no "
                  f"model; two annotators each, an expert on an unresolved merge), then {args.items} in batches of "
                  f"{args.batch}, each after the trainer ran on the previous; {args.encoder} encoder; the five "
                  f"services as separate processes on the shared Kafka and FerretDB{settings}; bench/spans.py's team "
                  f"{[a.name for a in TEAM]} + {EXPERT.name} over gRPC; model F1 on all {len(test)} test.conll items."),
        "namespace": live["namespace"], "seconds": round(time.perf_counter() - started, 1),
        "pipeline_seconds": live["pipeline_seconds"], "summary": summary,
        "manual_by_hand": offline["summary"]["manual_single"],
        "manual_double_with_expert": offline["summary"]["manual_double_with_expert"],
        "goal": goal(summary, offline), "checkpoints": live["checkpoints"], "models_on_test_conll": models,
        "offline_same_items": {"source": "bench/spans.py simulate() on the same items, bootstrap and batches",
                               **offline},
        "exit_codes": live["exit_codes"], "load_average_at_end": os.getloadavg(),
    }
    path = write_result(args.name, payload)
    s, o = summary, offline["summary"]
    print(table(["", "F1", "labels/item", "span edits/item"], [
        ["live, all items", s["all_items"]["final_f1"], s["all_items"]["human_labels_per_item"],
         s["all_items"]["span_edits_per_item"]],
        ["live, work items", s["work_items"]["final_f1"], s["work_items"]["human_labels_per_item"],
         s["work_items"]["span_edits_per_item"]],
        ["offline, all items", o["final_f1"], o["human_labels_per_item"], "-"],
        ["manual by hand", o["manual_single"]["f1"], 1.0, o["manual_single"]["span_edits_per_item"]],
        ["manual double + expert", o["manual_double_with_expert"]["f1"],
         o["manual_double_with_expert"]["human_labels_per_item"],
         o["manual_double_with_expert"]["span_edits_per_item"]],
    ]))
    print(table(["version", "promoted", "training items", "test F1", "offline test F1"],
                [[m["version"], m["promoted"], m["training_set_size"], m["test_f1"],
                  offline["models"][n]["test_f1"] if n < len(offline["models"]) else "-"]
                 for n, m in enumerate(models)]))
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
