"""Lineage queries and exports against a trainer that really trained (real Kafka and FerretDB), through the CLI too."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path

import pytest

from labelmesh.datasets import load
from labelmesh.ml.encoder import load_encoder
from schemas.events import ItemIngested, ItemPrelabeled, LabelFinalized, ProjectConfigured, Provenance, TextPayload
from services.trainer.app import create_app
from services.trainer.queries import LineageError, label_lineage, model_lineage
from services.trainer.settings import TrainerSettings
from tests.conftest import eventually
from tests.kafka_helpers import Env

pytestmark = pytest.mark.integration
LABELS = ("card_arrival", "exchange_rate", "pin_blocked", "top_up_failed")
REPO = Path(__file__).resolve().parents[2]


def _labelled(rows, vectors, encoder_name: str, provenance: Provenance) -> list:  # type: ignore[no-untyped-def]
    events = []
    for row, vec in zip(rows, vectors, strict=True):
        events += [
            ItemIngested(producer="test", project="lx", item_id=row.item_id, payload=TextPayload(text=row.text)),
            ItemPrelabeled(producer="test", project="lx", item_id=row.item_id, encoder=encoder_name,
                           embedding=tuple(float(x) for x in vec)),
            LabelFinalized(producer="test", project="lx", item_id=row.item_id, label=row.label, version=1,
                           provenance=provenance, confidence=1.0, human_labels=0, expert_labels=0, verified=False,
                           guideline_version=1),
        ]
    return events


async def _cli(env: Env, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labelmesh.cli", *args, cwd=REPO,
        env={**os.environ, **env.environ(), "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_lineage_and_exports_from_a_trainer_that_trained(env: Env, tmp_path: Path) -> None:
    rows = [r for r in load("train") if r.label in LABELS]
    random.Random(2).shuffle(rows)
    rows = rows[:160]
    encoder = load_encoder("hashing")
    vectors = encoder.encode([r.text for r in rows])
    # retrain_every=23: v1 trains on >= 100 of the first 130 rows (~117 outside the holdout), so at most 17 are
    # left over; the last 30 rows (~27 outside the holdout) plus the correction then make v2 certain, and
    # fewer than 2 x 23 fresh labels make a v3 impossible, however the training runs fall between batches.
    runtime = create_app(env.settings(TrainerSettings, first_model_min=100, retrain_every=23, min_eval_items=5))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="lx", labels=LABELS, guideline_version=1)])
        await env.publish_events(_labelled(rows[:130], vectors[:130], encoder.name, Provenance.IMPORTED))
        await env.read("model.updated", lambda rs: len(rs) >= 1, timeout=300)
        v1 = await model_lineage(runtime.db, "lx", 1)
        assert len(v1.members) >= 100 and v1.missing == ()
        assert v1.guideline_versions == {1: len(v1.members)} and v1.provenance == {"imported": len(v1.members)}
        assert sum(v1.label_distribution.values()) == len(v1.members) and set(v1.label_distribution) <= set(LABELS)

        # Correct one label that trained v1 (under guideline v2), then add enough labels for v2.
        corrected = v1.members[0]
        new_label = next(label for label in LABELS if label != corrected.label)
        await env.publish_events([LabelFinalized(
            producer="test", project="lx", item_id=corrected.item_id, label=new_label, version=2,
            provenance=Provenance.CORRECTED, confidence=1.0, human_labels=1, expert_labels=1, verified=True,
            guideline_version=2)])

        async def corrected_stored() -> bool:
            return await runtime.db["label_versions"].count_documents({"item_id": corrected.item_id}) == 2

        await eventually(corrected_stored, timeout=120)
        await env.publish_events(_labelled(rows[130:], vectors[130:], encoder.name, Provenance.SINGLE_REVIEW))
        await env.read("model.updated", lambda rs: len(rs) >= 2, timeout=300)

        v2 = await model_lineage(runtime.db, "lx", 2)
        keys = {f"{m.item_id}@{m.version}" for m in v2.members}
        assert f"{corrected.item_id}@2" in keys and f"{corrected.item_id}@1" not in keys
        assert v2.guideline_versions[2] == 1 and v2.provenance["corrected"] == 1
        usages = await label_lineage(runtime.db, "lx", corrected.item_id)
        assert [(u.label.version, u.label.label, u.models, u.superseded_by) for u in usages] == [
            (1, corrected.label, (1,), 2), (2, new_label, (2,), None)]
        with pytest.raises(LineageError, match="no model v99"):
            await model_lineage(runtime.db, "lx", 99)

        # The same answers through the command line, from a separate process.
        code, out, err = await _cli(env, "lineage", "model", "lx", "2", "--json")
        assert code == 0, err
        assert json.loads(out)["guideline_versions"] == {"1": len(v2.members) - 1, "2": 1}
        code, out, err = await _cli(env, "lineage", "label", "lx", corrected.item_id, "--json")
        assert code == 0, err
        assert [(u["label"]["version"], u["models"]) for u in json.loads(out)] == [(1, [1]), (2, [2])]
        code, out, err = await _cli(env, "lineage", "model", "lx", "2")
        assert code == 0 and f"guideline versions: v1: {len(v2.members) - 1}, v2: 1" in out, err
        code, out, err = await _cli(env, "lineage", "label", "lx", corrected.item_id)
        assert code == 0 and "corrected in v2" in out and "current" in out, err
        code, out, err = await _cli(env, "lineage", "model", "lx", "99")
        assert code == 2 and "no model v99" in err
        code, out, err = await _cli(env, "lineage", "label", "lx", "never-labelled")
        assert code == 2 and "no final label for item 'never-labelled'" in err
        code, out, err = await _cli(env, "snapshot", "--project", "nope", "--out", str(tmp_path))
        assert code == 2 and "no final labels" in err and not any(tmp_path.iterdir())

        code, out, err = await _cli(env, "snapshot", "--project", "lx", "--out", str(tmp_path), "--format", "jsonl",
                                    "--format", "parquet", "--format", "label-studio")
        assert code == 0, err
        directory = Path(out.strip().splitlines()[-1])
        manifest = json.loads((directory / "manifest.json").read_text())
        assert manifest["counts"]["rows"] == 160 and manifest["counts"]["with_text"] == 160
        assert manifest["champion"]["model_version"] == 2
        assert manifest["guideline_versions"] == {"1": 159, "2": 1}
        assert [m["model_version"] for m in manifest["models"]] == [1, 2]
        assert {f["name"] for f in manifest["files"]} == {"data.jsonl", "data.parquet", "label_studio.json",
                                                          "label_studio_config.xml"}
        recorded = await runtime.db["exports"].find_one({"_id": f"lx/{manifest['snapshot_version']}"})
        assert recorded["rows"] == 160 and json.loads(recorded["manifest_json"]) == manifest

        import datasets

        for builder, name in (("json", "data.jsonl"), ("parquet", "data.parquet")):
            ds = datasets.load_dataset(builder, data_files=str(directory / name), split="train",
                                       cache_dir=str(tmp_path / "hf"))
            assert ds.num_rows == 160
            by_id = dict(zip(ds["item_id"], ds["label"], strict=True))
            assert by_id[corrected.item_id] == new_label
            assert set(ds["label"]) <= set(LABELS) and set(ds["split"]) <= {"train", "holdout"}
            assert all(v == 2 for v in ds["model_version"]) and all(0 < s <= 1 for s in ds["model_score"])
        texts = {r.item_id: r.text for r in rows}
        tasks = json.loads((directory / "label_studio.json").read_text())
        assert len(tasks) == 160 and all(t["data"]["text"] == texts[t["data"]["item_id"]] for t in tasks)
        assert all(t["predictions"][0]["model_version"] == "v2" for t in tasks)
    finally:
        await runtime.stop()
