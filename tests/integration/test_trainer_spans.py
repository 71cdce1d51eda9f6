"""The trainer on a spans project: a span tagger from final spans and item texts, published as model.updated,
judged on held-out items like a head (an item is right only with all its spans)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from labelmesh.ml.encoder import load_encoder
from labelmesh.ml.spans import HASHING_WORDS, SpanTagger, word_features
from schemas.events import ItemIngested, ItemPrelabeled, LabelFinalized, ProjectConfigured, Provenance, TextPayload
from schemas.spans import SPANS_LABEL, TaskType
from services.trainer.app import create_app
from services.trainer.settings import TrainerSettings
from tests.kafka_helpers import Env
from tests.prelabeler_helpers import SPAN_TYPES, span_examples

pytestmark = pytest.mark.integration


async def test_trains_a_span_tagger_from_final_spans(env: Env) -> None:
    encoder = load_encoder("hashing")
    examples = span_examples(120)
    vectors = encoder.encode([e.text for e in examples])
    runtime = create_app(env.settings(TrainerSettings, first_model_min=60, min_eval_items=5))
    await runtime.start()
    try:
        await env.publish_events([ProjectConfigured(producer="test", project="ner", labels=SPAN_TYPES,
                                                    guideline_version=1, task=TaskType.SPANS)])
        events = []
        for n, (example, vector) in enumerate(zip(examples, vectors, strict=True)):
            item = f"i{n}"
            events += [
                ItemIngested(producer="test", project="ner", item_id=item, payload=TextPayload(text=example.text)),
                ItemPrelabeled(producer="test", project="ner", item_id=item, encoder=encoder.name,
                               embedding=tuple(float(x) for x in vector)),
                LabelFinalized(producer="test", project="ner", item_id=item, label=SPANS_LABEL, version=1,
                               provenance=Provenance.CONSENSUS, confidence=1.0, human_labels=2, expert_labels=0,
                               verified=False, guideline_version=1, spans=example.spans)]
        await env.publish_events(events)
        (model, *_) = await env.read("model.updated", lambda rs: len(rs) >= 1, timeout=90)
        content = base64.b64decode(model["artifact"]["content_b64"])
        assert hashlib.sha256(content).hexdigest() == model["artifact"]["sha256"]
        tagger = SpanTagger.from_bytes(content)
        assert tagger.entity_types == SPAN_TYPES and tagger.features == HASHING_WORDS
        assert model["encoder"] == encoder.name and model["heldout_metrics"]["heldout_n"] > 0
        assert model["heldout_metrics"]["heldout_span_f1"] > 0.9
        assert model["heldout_metrics"]["heldout_accuracy"] > 0.9
        text = "Bo flew to Kyiv today"
        (prediction,) = tagger.predict([text], word_features(encoder.name)([text]))
        assert [(text[s.start:s.end], s.label) for s in prediction.spans] == [("Bo", "person"), ("Kyiv", "location")]
    finally:
        await runtime.stop()
