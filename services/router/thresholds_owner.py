"""Per-project thresholds, learned by the one replica that owns the project's partition of threshold.evidence.

Evidence comes from every partition of label.finalized (item-keyed), so the item owners turn each verified
pre-label into a ThresholdEvidence keyed by project; model.updated and model flags are relayed the same way.
One consumer group reads that topic, so Kafka gives each project's partition to one replica at a time: it
alone writes the project's `thresholds` document, its `evidence` rows and its `threshold_changes`, and, when the
auto border moves down or a new model arrives, promotes the project's queued items that it now auto-accepts
(domain/promote.py), on the champion's confidences (champion.py): their second decisions go to `reroutes` under
ids derived from the first, so a redelivered cause promotes the same items under the same ids. The replica that
reads model.updated records each model for the router's replicas (champion.py) before relaying it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from itertools import groupby

from prometheus_client import Counter

import numpy as np

from labelmesh.runtime.mongo import find_by_ids, upsert_many
from labelmesh.runtime.projects import ProjectCatalog
from labelmesh.runtime.service import ServiceRuntime
from schemas.events import (
    Envelope,
    ItemRouted,
    LabelScore,
    ModelUpdated,
    ThresholdEvidence,
    ThresholdEvidenceKind,
    Thresholds,
    Tier,
    derived_id,
)
from schemas.keys import item_key
from services.router.champion import Champion, ChampionCache
from services.router.domain import thresholds as learning
from services.router.domain.evidence import ProjectLearning, adopts_recommendation, record_verified, unapplied
from services.router.domain.promote import moved_down, promotion
from services.router.domain.spot_check import is_spot_checked
from services.router.domain.tiers import RoutingPolicy
from services.router.settings import SERVICE, RouterSettings
from services.router.store import PromotionStore, ThresholdStore, evidence_row

log = logging.getLogger(__name__)
RESCORE_CHUNK = 1000  # queued items' embeddings read per query when a champion re-scores them


def recommendation(event: ModelUpdated) -> ThresholdEvidence:
    """model.updated (one partition, read by one replica) relayed onto the project's partition."""
    return ThresholdEvidence(
        event_id=derived_id(event.event_id, "evidence"), producer=SERVICE, project=event.project,
        correlation_id=event.correlation_id, occurred_at=event.occurred_at, kind=ThresholdEvidenceKind.RECOMMENDED,
        model_version=event.model_version, recommended=event.recommended_thresholds,
        details={"heldout_metrics": event.heldout_metrics, "training_set_version": event.training_set_version},
    )


class ThresholdOwner:
    def __init__(self, rt: ServiceRuntime, settings: RouterSettings, catalog: ProjectCatalog) -> None:
        self.rt = rt
        self.settings = settings
        self.catalog = catalog
        self.store = ThresholdStore(rt.db)
        self.promotions = PromotionStore(rt.db)
        self.champions = ChampionCache(rt.db)
        # Re-scored top-k of queued items by (project, champion version): embeddings never change, so a sweep
        # re-scores only the items it has not seen under this champion (a cache, rebuilt after a restart).
        self.rescored: dict[str, tuple[int, dict[str, tuple[LabelScore, ...] | None]]] = {}
        self.changes = Counter(
            "labelmesh_router_threshold_changes_total", "Threshold changes", ["project", "border"],
            registry=rt.registry,
        )
        self.promoted = Counter(
            "labelmesh_router_promoted_items_total",
            "Queued items routed again to auto because the auto-accept border moved below their confidence",
            ["project"], registry=rt.registry,
        )

    async def handle(self, events: list[Envelope]) -> None:
        models = [e for e in events if isinstance(e, ModelUpdated)]
        for model in models:  # recorded before it is relayed: its evidence event re-scores with it
            await self.champions.store.record(model)
        relayed = [recommendation(e) for e in models]
        evidence = [e for e in events if isinstance(e, ThresholdEvidence)]
        # A project's events stay in their order (one partition); projects are independent of each other.
        for project, group in groupby(sorted(evidence, key=lambda e: e.project), key=lambda e: e.project):
            await self._apply(project, list(group))
        if relayed:
            await self.rt.bus.publish(relayed)

    async def _apply(self, project: str, events: Sequence[ThresholdEvidence]) -> None:
        # Loaded per batch, never kept: the partition may have moved to another replica since the last one.
        state = await self.store.load(project)
        rows: list[dict[str, object]] = []
        for event in events[unapplied([e.event_id for e in events], state.applied):]:
            state = replace(state, applied=event.event_id)
            if event.kind == ThresholdEvidenceKind.VERIFIED:
                rows.append(evidence_row(event))
                state, due = record_verified(state, self.settings.relearn_every)
                if due:
                    await upsert_many(self.rt.db["evidence"], rows)
                    rows = []
                    state = await self._relearn(project, state, event)
            elif event.kind == ThresholdEvidenceKind.RECOMMENDED and event.recommended is not None:
                if adopts_recommendation(state, self.settings.adopt_every_recommendation):
                    state = await self._adopt(project, state, event, event.recommended)
                if self.settings.rescore_with_champion:
                    # The new champion re-scores the queue under the borders in force (before the state is saved
                    # as applied through the event, as for a border move).
                    await self._promote(project, state.in_force, state.in_force, event)
            elif event.kind == ThresholdEvidenceKind.MODEL_FLAGGED:
                shifted = learning.conservative_shift(state.in_force, self.settings.conservative_shift).thresholds
                state = await self._change(project, state, shifted, event.reason, event.details, event)
        if rows:
            await upsert_many(self.rt.db["evidence"], rows)
        await self.store.save(project, state)

    async def _adopt(self, project: str, state: ProjectLearning, event: ThresholdEvidence,
                     recommended: Thresholds) -> ProjectLearning:
        start = learning.starting_thresholds(
            recommended, self.settings.single_start if state.thresholds is None else None, in_force=state.in_force
        )
        reason = f"trainer's recommendation for model v{event.model_version}" + (
            f", single border starting at {start.single_review} (single_start)"
            if start.single_review != recommended.single_review else "") + (
            f", auto border kept at {start.auto_accept}: only the router's verified pre-labels lower it"
            if start.auto_accept != recommended.auto_accept else "")
        return await self._change(project, state, start, reason, event.details, event)

    async def _relearn(self, project: str, state: ProjectLearning, cause: ThresholdEvidence) -> ProjectLearning:
        config = await self.catalog.get(project)
        evidence = [
            learning.Observation(d["confidence"], d["correct"], d["weight"])
            async for d in self.rt.db["evidence"].find({"project": project})
        ]
        update = learning.learn_thresholds(
            evidence,
            state.in_force,
            target_auto_error=config.target_auto_error if config else learning.DEFAULT_TARGET_AUTO_ERROR,
            target_single_error=self.settings.target_single_error,
            min_evidence=self.settings.min_evidence,
            step_up_when_refuted=self.settings.step_up_when_refuted,
            single_floor=self.settings.single_floor,
            auto_border_error=self.settings.auto_border_error,
        )
        if update.thresholds == state.in_force:
            return state
        return await self._change(
            project, state, update.thresholds, "; ".join(c.reason for c in update.changes if c.changed),
            {"changes": [
                {"border": c.border.value, "n": c.n, "errors": c.errors, "bound": c.bound, "target": c.target,
                 "method": c.method} for c in update.changes
            ]},
            cause,
        )

    async def _change(self, project: str, state: ProjectLearning, new: Thresholds, reason: str,
                      evidence: dict[str, object], cause: ThresholdEvidence) -> ProjectLearning:
        """Store the new borders at once (routing replicas read them by `_id`) and the change with its evidence,
        under an id derived from its cause so a redelivered cause rewrites the same record."""
        old = state.in_force
        state = replace(state, thresholds=new)
        # The record first: a state saved as applied through its cause has its change recorded.
        await self.rt.db["threshold_changes"].replace_one(
            {"_id": derived_id(cause.event_id, "threshold-change")},
            {"project": project, "at": cause.occurred_at, "old": old.model_dump(),
             "new": new.model_dump(), "reason": reason, "evidence": evidence, "cause": cause.event_id},
            upsert=True,
        )
        if moved_down(old, new):
            # Before the state is saved as applied through the cause: a crash in between promotes again, under
            # the same ids. An item routed with the old borders while this runs waits for the next move.
            await self._promote(project, old, new, cause)
        await self.store.save(project, state)
        for border in ("auto_accept", "single_review"):
            if getattr(new, border) != getattr(old, border):
                self.changes.labels(project, border).inc()
        log.info("%s thresholds %s -> %s: %s", project, old, new, reason)
        return state

    async def _promote(self, project: str, old: Thresholds, new: Thresholds, cause: ThresholdEvidence) -> None:
        if new.auto_accept >= learning.AUTO_OFF:
            return
        config = await self.catalog.get(project)
        if config is None:  # nothing was routed without one (the item owner waits for it)
            return
        champion = await self._champion(project)
        if new == old and champion is None:  # a new model that cannot re-score: nothing queued can change
            return
        policy = RoutingPolicy(config.multi_annotators, self.settings.expert_margin, self.settings.ood_similarity_floor)
        queued = await self.promotions.queued(project)
        rescored = await self._rescore(project, queued, champion) if champion is not None else {}
        why = (f"the auto-accept border moved {old.auto_accept:.3f} -> {new.auto_accept:.3f}" if new != old
               else f"model v{champion.version} arrived")
        promoted: list[ItemRouted] = []
        for first in queued:
            top = rescored.get(first.item_id)
            decision = first if top is None or champion is None else first.model_copy(
                update=dict(top_k=top, model_version=champion.version))
            routed = promotion(decision, new, policy,
                               is_spot_checked(project, first.item_id, self.settings.spot_check_rate))
            if routed is None:
                continue
            by = (f"; re-scored by model v{decision.model_version}: {decision.top_k[0].probability:.3f}"
                  if decision is not first else "")
            promoted.append(decision.model_copy(update=dict(
                event_id=derived_id(first.event_id, "promoted"), producer=SERVICE, occurred_at=cause.occurred_at,
                tier=Tier.AUTO,
                required_annotators=0, spot_check=False, thresholds=new, promoted=True,
                reasons=(*routed.reasons, f"promoted from {first.tier.value}: {why}{by}"),
            )))
        if not promoted:
            return
        await self.promotions.record(promoted)
        await self.rt.bus.publish(promoted)
        self.promoted.labels(project).inc(len(promoted))
        log.info("%s: %d queued item(s) promoted to auto at border %.3f (%s)", project, len(promoted),
                 new.auto_accept, why)

    async def _champion(self, project: str) -> Champion | None:
        if not self.settings.rescore_with_champion:
            return None
        await self.champions.refresh([project])
        return self.champions.get(project)

    async def _rescore(self, project: str, queued: Sequence[ItemRouted], champion: Champion
                       ) -> dict[str, tuple[LabelScore, ...]]:
        """The champion's top-k for the queued items an older model (or none) pre-labelled, by item id; an item
        whose embedding came from another encoder (or is not stored) keeps its first pre-label, and is remembered
        as such (None) so that later sweeps under this champion do not read it again."""
        version, known = self.rescored.get(project, (0, {}))
        if version != champion.version:
            known = {}
            self.rescored[project] = (champion.version, known)
        stale = [r for r in queued if r.item_id not in known and not r.golden and r.spans is None
                 and (r.model_version is None or r.model_version < champion.version)]
        for start in range(0, len(stale), RESCORE_CHUNK):
            chunk = stale[start:start + RESCORE_CHUNK]
            docs = await find_by_ids(self.promotions.items, [item_key(project, r.item_id) for r in chunk],
                                     {"item_id": 1, "embedding": 1, "encoder": 1})
            known.update((r.item_id, None) for r in chunk)
            fit = [(d["item_id"], v) for d in docs if "embedding" in d
                   and champion.fits(v := np.frombuffer(d["embedding"], np.float32), d.get("encoder"))]
            if fit:
                scores = champion.scores(np.stack([v for _, v in fit]))
                known.update((item_id, top) for (item_id, _), top in zip(fit, scores, strict=True))
        return {r.item_id: top for r in queued if (top := known.get(r.item_id)) is not None}
