"""What qc catches on BANKING77 with the simulated team: when the bad annotators are flagged, how precise the
kNN and label-error flags are, and final-label accuracy with and without qc.

Usage: python bench/qc_quality.py [--work 1200] [--golden 100] [--bootstrap 500] [--seed 7] [--encoder minilm]
Needs the real Kafka and FerretDB (the qc service runs in-process against them, like the integration tests).
Writes bench/results/qc_quality.json.

The driver plays router and gateway in a simplified way: fixed confidence thresholds (no learning),
tasks handed out in rounds (each active annotator takes 5 per round, 1 in 10 a golden item), qc given
time to process each round, then its flags applied: suspended annotators get no more tasks, and items
flagged for disagreement, kNN inconsistency or a suspended annotator's label go to an expert, as the
router does. Likely-label-error flags are only counted (the router does not reroute them either).
A second part runs qc's confident-learning pass (the same function) on BANKING77 embeddings with
label noise injected at known rates, for precision and recall against known errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from _common import cached_embeddings, environment, load_split, write_result
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from labelmesh.infra import create_topics
from labelmesh.ml import load_encoder, train_head
from labelmesh.runtime.settings import CommonSettings
from labelmesh.simulation import default_team
from schemas.events import (
    Envelope,
    ItemIngested,
    ItemPrelabeled,
    ItemRouted,
    LabelScore,
    LabelSubmitted,
    ProjectConfigured,
    TextPayload,
    Thresholds,
    Tier,
)
from services.qc.app import create_app
from services.qc.domain.label_errors import label_error_pass
from services.qc.settings import QcSettings

PROJECT = "bench"
AUTO, SINGLE = 0.95, 0.50  # fixed borders for the bench's stand-in router
PER_ROUND, GOLDEN_RATE = 5, 0.10
REROUTED = {"disagreement", "knn_inconsistency", "suspended_annotator_label"}


class Pipeline:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        base = CommonSettings()
        self.namespace = f"benchqc{int(time.time())}"
        self.prefix = f"{self.namespace}."
        self.bootstrap = base.kafka_bootstrap
        self.settings = QcSettings(kafka_bootstrap=base.kafka_bootstrap, mongo_uri=base.mongo_uri,
                                   namespace=self.namespace, topic_prefix=self.prefix, http_port=0)
        self.clock = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        self.sent: Counter[str] = Counter()  # labels per annotator (golden answers included)
        self.flags: list[dict[str, Any]] = []
        self.flag_at: list[dict[str, int]] = []  # labels each annotator had sent when the flag was read
        self.votes: dict[str, list[tuple[str, str]]] = defaultdict(list)  # item -> (annotator, label), humans only
        self.scores: dict[str, tuple[LabelScore, ...]] = {}

    async def publish(self, events: list[Envelope]) -> None:
        for e in events:
            await self.producer.send(self.prefix + e.TOPIC, e.model_dump_json().encode(), key=e.key.encode())
        await self.producer.flush()

    async def drain_flags(self) -> list[dict[str, Any]]:
        out = []
        for msgs in (await self.consumer.getmany(timeout_ms=300)).values():
            out.extend(json.loads(m.value) for m in msgs)
        snapshot = dict(self.sent)
        self.flags += out
        self.flag_at += [snapshot] * len(out)
        return out

    async def wait_for_qc(self, collection: str, query: dict[str, Any], n: int, timeout: float = 900,
                          poll_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while await self.db[collection].count_documents(query) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"qc did not reach {n} {collection} for {query}")
            await asyncio.sleep(poll_s)

    async def wait_processed(self, events: list[Envelope], timeout: float = 900) -> None:
        """Until qc's inbox holds every one of these events: the handler, its writes and its publishes are done."""
        ids = [e.event_id for e in events]
        await self.wait_for_qc("processed_events", {"_id": {"$in": ids}}, len(ids), timeout, poll_s=1.0)
        # Claimed above; finished once none of them is in flight any more.
        deadline = time.monotonic() + timeout
        while await self.db["inflight_events"].count_documents({"ids": {"$in": ids}}):
            if time.monotonic() > deadline:
                raise TimeoutError("qc did not finish the batch it claimed")
            await asyncio.sleep(1.0)

    async def run(self) -> dict[str, Any]:
        args = self.args
        texts, labels = load_split("train")
        order = list(range(len(texts)))
        self.rng.shuffle(order)
        boot = order[: args.bootstrap]
        gold = order[args.bootstrap: args.bootstrap + args.golden]
        work = order[args.bootstrap + args.golden: args.bootstrap + args.golden + args.work]
        chosen = boot + gold + work
        encoder = load_encoder(args.encoder, device="cpu")
        x_all, _ = cached_embeddings(encoder, "train-qcbench", [texts[i] for i in chosen])
        emb = {i: x_all[k] for k, i in enumerate(chosen)}
        categories = sorted(set(labels))
        head = train_head(np.stack([emb[i] for i in boot]), [labels[i] for i in boot], encoder_name=encoder.name,
                          classes=categories, cv_folds=5)
        top = {i: t for i, t in zip(gold + work, head.top_k(np.stack([emb[i] for i in gold + work]), 5), strict=True)}
        truth = {f"r{i}": labels[i] for i in chosen}

        await create_topics(self.bootstrap, self.prefix)
        runtime = create_app(self.settings)
        self.db = runtime.db
        await runtime.start()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=16 * 1024 * 1024,
                                         linger_ms=5)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(self.prefix + "qc.flagged", bootstrap_servers=self.bootstrap,
                                         auto_offset_reset="earliest", group_id=None)
        await self.consumer.start()
        started = time.perf_counter()
        try:
            return await self._simulate(categories, boot, gold, work, emb, top, truth, labels, started)
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            await runtime.stop()

    def _event_time(self) -> datetime:
        self.clock += timedelta(seconds=8)
        return self.clock

    async def _simulate(self, categories, boot, gold, work, emb, top, truth, labels, started) -> dict[str, Any]:  # noqa: ANN001
        p = PROJECT
        vec = {i: tuple(float(v) for v in emb[i]) for i in emb}
        events: list[Envelope] = [ProjectConfigured(producer="bench", project=p, labels=tuple(categories),
                                                    guideline_version=1)]
        for i in boot:
            events += [ItemIngested(producer="bench", project=p, item_id=f"r{i}", payload=TextPayload(text="."),
                                    trusted_label=labels[i]),
                       ItemPrelabeled(producer="bench", project=p, item_id=f"r{i}", encoder="minilm",
                                      embedding=vec[i], trusted=True)]
        tiers: dict[str, Tier] = {}
        for i in gold + work:
            scores = tuple(LabelScore(label=lbl, probability=min(1.0, prob)) for lbl, prob in top[i])
            golden = i in set(gold)
            ingest = ItemIngested(producer="bench", project=p, item_id=f"r{i}", payload=TextPayload(text="."),
                                  golden_label=labels[i] if golden else None)
            pre = ItemPrelabeled(producer="bench", project=p, item_id=f"r{i}", model_version=1, encoder="minilm",
                                 top_k=scores, embedding=vec[i], golden=golden)
            prob = scores[0].probability
            tier = Tier.SINGLE if golden else Tier.AUTO if prob > AUTO else Tier.SINGLE if prob >= SINGLE else Tier.MULTI
            required = 0 if golden or tier is Tier.AUTO else 1 if tier is Tier.SINGLE else 3
            tiers[f"r{i}"] = tier
            self.scores[f"r{i}"] = scores
            events += [ingest, pre, ItemRouted(producer="bench", project=p, item_id=f"r{i}", tier=tier,
                                               required_annotators=required, golden=golden, model_version=1,
                                               top_k=scores, thresholds=Thresholds(auto_accept=AUTO,
                                                                                   single_review=SINGLE))]
        await self.publish(events)
        for start in range(0, len(events), 500):
            await self.wait_processed(events[start:start + 500])
        print(f"routed {len(work)} work items: {dict(Counter(t.value for t in tiers.values() if t))}", flush=True)

        team = default_team(self.args.seed)
        workers = [s for s in team if s.role != "expert"]
        experts = [s for s in team if s.role == "expert"]
        suspended: set[str] = set()
        open_slots = [(f"r{i}", 3 if tiers[f"r{i}"] is Tier.MULTI else 1) for i in work
                      if tiers[f"r{i}"] is not Tier.AUTO]
        queue = [item for item, n in open_slots for _ in range(n)]
        done_by: dict[str, set[str]] = defaultdict(set)
        golden_ids = [f"r{i}" for i in gold]
        golden_done: dict[str, set[str]] = defaultdict(set)
        suggested = {f"r{i}": [lbl for lbl, _ in top[i]] for i in gold + work}
        expert_queue: list[str] = []
        expert_done: set[str] = set()
        sent_total = 0
        rounds = 0
        while queue or expert_queue:
            rounds += 1
            batch: list[Envelope] = []
            for sim in workers:
                if sim.name in suspended:
                    continue
                for _ in range(PER_ROUND):
                    if self.rng.random() < GOLDEN_RATE:
                        pool = [g for g in golden_ids if g not in golden_done[sim.name]]
                        if pool:
                            item = self.rng.choice(pool)
                            golden_done[sim.name].add(item)
                            batch.append(self._label(sim, item, truth, categories, suggested, golden=True))
                            continue
                    pick = next((k for k, it in enumerate(queue) if sim.name not in done_by[it]), None)
                    if pick is None:
                        break
                    item = queue.pop(pick)
                    done_by[item].add(sim.name)
                    label_event = self._label(sim, item, truth, categories, suggested)
                    self.votes[item].append((sim.name, label_event.label))
                    batch.append(label_event)
            for item in expert_queue:
                sim = experts[int(item[1:]) % len(experts)]
                batch.append(self._label(sim, item, truth, categories, suggested))
                expert_done.add(item)
            expert_queue = []
            if not batch:
                if all(s.name in suspended for s in workers):
                    break
                continue
            await self.publish(batch)
            sent_total += len(batch)
            await self.wait_processed(batch)
            for f in await self.drain_flags():
                if f["kind"] == "annotator_suspended":
                    suspended.add(f["subject_id"])
                elif f["kind"] in REROUTED and f.get("item_id") and f["item_id"] not in expert_done:
                    if f["item_id"] not in expert_queue:
                        expert_queue.append(f["item_id"])
                        await self.publish([ItemRouted(
                            producer="bench", project=p, item_id=f["item_id"], tier=Tier.EXPERT,
                            required_annotators=1, model_version=1, thresholds=Thresholds(),
                            top_k=self.scores[f["item_id"]],
                            reasons=(f"rerouted: {f['kind']}",))])
            if rounds % 10 == 0:
                print(f"round {rounds}: {sent_total} labels, {len(queue)} open slots, {len(self.flags)} flags, "
                      f"suspended {sorted(suspended)}", flush=True)
        await asyncio.sleep(2.0)
        await self.drain_flags()
        elapsed = time.perf_counter() - started
        return await self._summarise(work, tiers, truth, top, suspended, rounds, sent_total, elapsed)

    def _label(self, sim, item: str, truth, categories, suggested, *, golden: bool = False) -> LabelSubmitted:  # noqa: ANN001
        label = sim.answer(truth[item], categories, suggested.get(item, []))
        self.sent[sim.name] += 1
        return LabelSubmitted(producer="bench", project=PROJECT, item_id=item, task_id=f"{item}-{sim.name}",
                              annotator_id=sim.name, role=sim.role, label=label, time_spent_ms=sim.time_spent_ms(),
                              guideline_version=1, idempotency_key=f"{item}-{sim.name}", golden=golden,
                              occurred_at=self._event_time())

    async def _summarise(self, work, tiers, truth, top, suspended, rounds, sent_total, elapsed) -> dict[str, Any]:  # noqa: ANN001
        finals = {d["item_id"]: d["final"] async for d in self.db["items"].find(
            {"project": PROJECT, "final": {"$exists": True}}, {"item_id": 1, "final": 1})}
        work_ids = [f"r{i}" for i in work]
        with_qc = [finals[i]["label"] == truth[i] for i in work_ids if i in finals]

        def no_qc(item: str) -> str:
            """Without qc: the auto label, the single reviewer's label, or the plain majority of the first three."""
            if tiers[item] is Tier.AUTO:
                return top[int(item[1:])][0][0]
            votes = [lbl for _, lbl in self.votes[item]]
            if not votes:
                return top[int(item[1:])][0][0]
            counts = Counter(votes[:3])
            best = max(counts.values())
            return next(lbl for lbl in votes if counts[lbl] == best)

        without = [no_qc(i) == truth[i] for i in work_ids]
        by_kind = Counter(f["kind"] for f in self.flags)
        bad = {"ann-random": None, "ann-drifter": 150}
        caught: dict[str, Any] = {}
        for name, changed_at in bad.items():
            entries = []
            for f, at in zip(self.flags, self.flag_at, strict=True):
                if f.get("subject") == "annotator" and f["subject_id"] == name:
                    entries.append({"kind": f["kind"], "test": f["evidence"].get("test"),
                                    "labels_sent_when_read": at.get(name, 0),
                                    "labels_seen_by_pass": f["evidence"].get("labels_seen"),
                                    "window_end": f["evidence"].get("end"), "message": f["message"]})
                if f["kind"] == "low_agreement":
                    pairs = [s for s in f["evidence"]["shortfalls"] if name in s.get("annotators", [])]
                    if pairs:
                        entries.append({"kind": "low_agreement", "window": f["evidence"]["window"],
                                        "labels_sent_when_read": at.get(name, 0),
                                        "pairs": [[*s["annotators"], round(s["value"], 3)] for s in pairs]})
            first = min((e["labels_sent_when_read"] for e in entries), default=None)
            caught[name] = {"degrades_after_labels": changed_at, "first_flag_after_labels": first,
                            "labels_after_change": None if first is None or changed_at is None else first - changed_at,
                            "flags": entries}
        good = [s for s in (f"ann-{k}" for k in range(5))]
        false_annotator_flags = [{"annotator": f["subject_id"], "kind": f["kind"], "test": f["evidence"].get("test"),
                                  "message": f["message"]}
                                 for f in self.flags if f.get("subject") == "annotator" and f["subject_id"] in good]
        knn = [f for f in self.flags if f["kind"] == "knn_inconsistency"]
        knn_wrong = [f["evidence"]["label"] != truth[f["item_id"]] for f in knn]
        cl = [f for f in self.flags if f["kind"] == "likely_label_error"]
        cl_wrong = [f["evidence"]["given"] != truth[f["item_id"]] for f in cl]
        human_final = [i for i in work_ids if i in finals and finals[i]["provenance"] != "auto"]
        return {
            "namespace": self.namespace,
            "work_items": len(work_ids), "tiers": dict(Counter(tiers[i].value for i in work_ids)),
            "rounds": rounds, "labels_sent": sent_total, "labels_per_annotator": dict(self.sent),
            "seconds": round(elapsed, 1),
            "final_labels": len(with_qc),
            "final_accuracy_with_qc": sum(with_qc) / len(with_qc) if with_qc else None,
            "final_accuracy_without_qc": sum(without) / len(without),
            "human_reviewed_accuracy_with_qc": (sum(finals[i]["label"] == truth[i] for i in human_final)
                                                / len(human_final)) if human_final else None,
            "provenance": dict(Counter(finals[i]["provenance"] for i in work_ids if i in finals)),
            "expert_labels": sum(self.sent[e] for e in ("expert-0", "expert-1")),
            "suspended": sorted(suspended),
            "flags_by_kind": dict(by_kind),
            "bad_annotators": caught,
            "false_annotator_flags": false_annotator_flags,
            "knn_flags": {"n": len(knn), "precision_label_was_wrong": (sum(knn_wrong) / len(knn)) if knn else None},
            "label_error_flags_in_pipeline": {
                "n": len(cl), "precision_label_was_wrong": (sum(cl_wrong) / len(cl)) if cl else None,
                "wrong_human_finals_at_end": sum(finals[i]["label"] != truth[i] for i in human_final),
            },
        }


def injected_noise(args: argparse.Namespace) -> list[dict[str, Any]]:
    """qc's confident-learning pass on clean BANKING77 labels with noise injected at known rates."""
    texts, labels = load_split("train")
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(texts))[: args.noise_items]
    encoder = load_encoder(args.encoder, device="cpu")
    x, _ = cached_embeddings(encoder, "train-qcnoise", [texts[i] for i in idx])
    clean = [labels[i] for i in idx]
    categories = sorted(set(labels))
    out = []
    for rate in (0.05, 0.10, 0.20):
        noisy = list(clean)
        flip = rng.choice(len(noisy), int(rate * len(noisy)), replace=False)
        for j in flip:
            noisy[j] = str(rng.choice([c for c in categories if c != clean[j]]))
        ids = [f"r{i}" for i in idx]
        started = time.perf_counter()
        report = label_error_pass(x, noisy, ids)
        seconds = time.perf_counter() - started
        errors = set(int(j) for j in flip)
        found = [issue.index for issue in report.issues]
        hit = [j in errors for j in found]
        top50 = hit[:50]
        out.append({
            "noise_rate": rate, "items": len(noisy), "injected": len(errors), "flagged": len(found),
            "precision": sum(hit) / len(found) if found else None, "recall": sum(hit) / len(errors),
            "precision_at_50": sum(top50) / len(top50) if top50 else None,
            "suggested_is_true_label": (sum(report.issues[k].suggested == clean[report.issues[k].index]
                                            for k in range(len(found)) if hit[k]) / max(1, sum(hit))),
            "skipped_small_classes": len(report.skipped), "seconds": round(seconds, 2),
        })
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=int, default=1200)
    parser.add_argument("--golden", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--noise-items", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "qc_quality", "args": vars(args), "environment": environment()}
    result["injected_noise"] = injected_noise(args)
    if not args.skip_pipeline:
        result["pipeline"] = asyncio.run(Pipeline(args).run())
    path = write_result("qc_quality", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
