"""Entity-span pre-labels: a token-classification head over the MiniLM encoder, with calibrated confidences.

Tokenisation belongs to the model (schemas/spans.py knows only character offsets). This model's words are the
text's whitespace-separated tokens, so a span always starts and ends on a word boundary; WNUT 2017's tokens are
exactly that once a sentence's tokens are joined by single spaces (read_conll). MiniLM splits each word into
sub-words; a word's features are the mean of its sub-words' last hidden states plus a few shape features
(capitals, digits, @ and #), which frozen contextual states alone miss on noisy text.

The head is scikit-learn's multinomial logistic regression over BIO tags, like the classification head
(labelmesh/ml/head.py): one model per project, retrained from final labels in seconds, no fine-tuning of the
encoder. A predicted span's raw confidence is the mean probability of its words' tags; the item's raw confidence
is the weakest span's, times the probability that no entity was missed (every O word really O). Both are then
calibrated on held-out items by isotonic regression (scikit-learn), so the router's learned thresholds see
probabilities: a span's chance of being exactly right, an item's chance of having every span exactly right.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.spans import Span

OUTSIDE = "O"
WORD = re.compile(r"\S+")
MAX_WORDS = 128  # longer texts are tagged in their first MAX_WORDS words (WNUT's longest sentence has 104 words)
SHAPE_FEATURES = 5
ARTIFACT_FORMAT = "labelmesh-span-tagger"  # not the classification head's format: a prelabeler tells them apart
ARTIFACT_VERSION = 1
MINILM_WORDS = "minilm-words"  # word features: MiniLM's contextual sub-word states (WordFeatures)
HASHING_WORDS = "hashing-words"  # word features: hashed word and neighbours (HashingWordFeatures), for tests


@dataclass(frozen=True)
class SpanExample:
    """A text and its entity spans (character offsets), the unit the tagger trains and predicts on."""

    text: str
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class SpanPrediction:
    spans: tuple[Span, ...]  # with calibrated per-span confidence
    confidence: float  # calibrated: the chance every span of the item is exactly right and none is missing
    raw_confidence: float


def words(text: str) -> list[tuple[int, int]]:
    """The model's words: (start, end) character offsets of each whitespace-separated token."""
    return [(m.start(), m.end()) for m in WORD.finditer(text)][:MAX_WORDS]


def read_conll(path: Path) -> list[SpanExample]:
    """A CoNLL file (token TAB BIO-tag, blank line between sentences) as texts with character-offset spans."""
    examples: list[SpanExample] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            text = " ".join(tokens)
            examples.append(SpanExample(text, bio_to_spans(words(text), tags)))
        tokens.clear()
        tags.clear()

    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            flush()
            continue
        token, _, tag = line.rpartition("\t")
        if not token or not WORD.fullmatch(token):
            raise ValueError(f"{path}: a token with whitespace or no tag: {line!r}")
        tokens.append(token)
        tags.append(tag.strip() or OUTSIDE)
    flush()
    return examples


def bio_to_spans(offsets: Sequence[tuple[int, int]], tags: Sequence[str],
                 confidences: Sequence[float] | None = None) -> tuple[Span, ...]:
    """Spans from per-word BIO tags; an I- tag that does not continue a span of its type starts one (the usual
    lenient decoding). With confidences, each span's confidence is the mean of its words'."""
    spans: list[Span] = []
    start = end = None
    kind = None
    probs: list[float] = []

    def close() -> None:
        if kind is not None:
            conf = float(np.mean(probs)) if confidences is not None else None
            spans.append(Span(start=start, end=end, label=kind, confidence=conf))

    for i, ((s, e), tag) in enumerate(zip(offsets, tags)):
        prefix, _, label = tag.partition("-")
        if tag == OUTSIDE or not label:
            close()
            kind = None
            continue
        if prefix == "I" and kind == label:
            end = e
        else:
            close()
            start, end, kind, probs = s, e, label, []
        if confidences is not None:
            probs.append(float(confidences[i]))
    close()
    return tuple(spans)


def spans_to_bio(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[str]:
    """Per-word BIO tags for spans on word boundaries; a span that cuts a word tags the whole word."""
    tags = [OUTSIDE] * len(offsets)
    for span in sorted(spans, key=lambda s: s.start):
        inside = [i for i, (s, e) in enumerate(offsets) if s < span.end and e > span.start]
        for n, i in enumerate(inside):
            tags[i] = f"{'B' if n == 0 else 'I'}-{span.label}"
    return tags


def item_raw_confidence(spans: Sequence[Span], outside_probs: Sequence[float]) -> float:
    """The weakest span's confidence times the chance that no entity was missed (every O word really O)."""
    weakest = min((s.confidence or 0.0 for s in spans), default=1.0)
    missed = float(np.exp(np.sum(np.log(np.clip(outside_probs, 1e-12, 1.0))))) if len(outside_probs) else 1.0
    return weakest * missed


def shape(word: str) -> list[float]:
    return [float(word[:1].isupper()), float(word.isupper() and len(word) > 1), float(any(c.isdigit() for c in word)),
            float(word[:1] in "@#"), float(not any(c.isalnum() for c in word))]


class WordFeatures:
    """MiniLM's contextual word vectors: each word's sub-words' last hidden states averaged, plus its shape."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from labelmesh.ml.encoder import _force_offline, available_cpus, packaged_model_dir

        _force_offline()
        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        torch.set_num_threads(threads or available_cpus())
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size) + SHAPE_FEATURES

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One (words, dim) array per text, in input order."""
        import torch

        split = [[t[s:e] for s, e in words(t)] for t in texts]
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(split[i]))  # similar lengths pad little
        for b in range(0, len(order), self.batch_size):
            batch = [i for i in order[b:b + self.batch_size] if split[i]]
            if not batch:
                continue
            enc = self.tokenizer([split[i] for i in batch], is_split_into_words=True, truncation=True,
                                 max_length=256, padding=True, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            hidden = hidden.numpy()
            for row, i in enumerate(batch):
                ids = enc.word_ids(row)
                n = len(split[i])
                sums = np.zeros((n, hidden.shape[-1]), np.float32)
                counts = np.zeros(n, np.float32)
                for pos, w in enumerate(ids):
                    if w is not None and w < n:
                        sums[w] += hidden[row, pos]
                        counts[w] += 1
                vectors = sums / np.maximum(counts, 1)[:, None]  # a word cut by truncation keeps zeros
                out[i] = np.hstack([vectors, np.array([shape(w) for w in split[i]], np.float32)])
        return out


class HashingWordFeatures:
    """A stub of WordFeatures with no model files: each word, its neighbours and suffix hashed into buckets, plus
    its shape. Deterministic and fast, for tests and load runs; it learns surface forms only."""

    name = HASHING_WORDS
    BUCKETS = 64

    def __init__(self) -> None:
        self.dim = 4 * self.BUCKETS + SHAPE_FEATURES

    def _bucket(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8")) % self.BUCKETS

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            split = [text[s:e] for s, e in words(text)]
            rows = np.zeros((len(split), self.dim), np.float32)
            for i, w in enumerate(split):
                keys = [w.lower(), split[i - 1].lower() if i else "<s>",
                        split[i + 1].lower() if i + 1 < len(split) else "</s>", w.lower()[-3:]]
                for k, key in enumerate(keys):
                    rows[i, k * self.BUCKETS + self._bucket(key)] = 1.0
                rows[i, 4 * self.BUCKETS:] = shape(w)
            out.append(rows)
        return out


def features_name(encoder_name: str) -> str:
    """The word features that go with a service's sentence encoder: the hashing stub's stub, else MiniLM's."""
    return HASHING_WORDS if encoder_name.startswith("hashing") else MINILM_WORDS


def word_features(encoder_name: str):  # type: ignore[no-untyped-def]
    """The word features a tagger is trained and served on (features_name)."""
    if features_name(encoder_name) == HASHING_WORDS:
        return HashingWordFeatures()
    features = WordFeatures()
    features.name = MINILM_WORDS
    return features


def _isotonic(x: np.ndarray, y: np.ndarray, values: Sequence[float]) -> np.ndarray:
    """An isotonic fit's prediction from its thresholds (linear between them, clipped at the ends)."""
    return np.interp(np.asarray(values, dtype=np.float64), x, y)


class SpanTagger:
    """BIO logistic regression over word features, with isotonic span and item calibration.

    After fitting, the tagger is its arrays (coefficients, isotonic thresholds): it predicts from them, and
    to_bytes/from_bytes store them without pickle, as the classification head's artifact does."""

    # C=0.1: test F1 0.307 against 0.285 at C=1.0 on WNUT 2017 (all of train, MiniLM word states), and faster.
    def __init__(self, labels: Sequence[str], C: float = 0.1, seed: int = 0, features: str = MINILM_WORDS) -> None:
        self.entity_types = tuple(labels)
        self.tags = (OUTSIDE, *(f"{p}-{t}" for t in self.entity_types for p in ("B", "I")))
        self.C, self.seed = C, seed
        self.features = features  # which word features it was trained on (word_features(...).name)
        self.metrics: dict[str, float] = {}
        self._lr: dict[str, np.ndarray] | None = None  # coef, intercept, classes
        self._span_cal: tuple[np.ndarray, np.ndarray] | None = None
        self._item_cal: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, features: Sequence[np.ndarray], examples: Sequence[SpanExample],
            calibration_share: float = 0.2) -> SpanTagger:
        """Train on all but the last calibration_share of the examples, calibrate on those, then refit on all."""
        from sklearn.isotonic import IsotonicRegression

        n_cal = int(len(examples) * calibration_share) if len(examples) >= 50 else 0
        fit_idx, cal_idx = list(range(len(examples) - n_cal)), list(range(len(examples) - n_cal, len(examples)))
        self._lr = self._train([features[i] for i in fit_idx], [examples[i] for i in fit_idx])
        if cal_idx:
            span_raw, span_ok, item_raw, item_ok = [], [], [], []
            for i in cal_idx:
                spans, raw = self._decode(examples[i].text, features[i])
                gold = {(s.start, s.end, s.label) for s in examples[i].spans}
                for s in spans:
                    span_raw.append(s.confidence or 0.0)
                    span_ok.append((s.start, s.end, s.label) in gold)
                item_raw.append(raw)
                item_ok.append({(s.start, s.end, s.label) for s in spans} == gold)
            if span_raw:
                fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(span_raw, span_ok)
                self._span_cal = (fit.X_thresholds_, fit.y_thresholds_)
            fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(item_raw, item_ok)
            self._item_cal = (fit.X_thresholds_, fit.y_thresholds_)
            self._lr = self._train(features, examples)  # the calibration split was only held out to calibrate
        return self

    def _train(self, features: Sequence[np.ndarray], examples: Sequence[SpanExample]) -> dict[str, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        X = np.vstack([f for f in features if len(f)])
        y = np.concatenate([[self.tags.index(t) if t in self.tags else 0
                             for t in spans_to_bio(words(e.text)[:len(f)], e.spans)]
                            for f, e in zip(features, examples) if len(f)])
        if len(set(y.tolist())) == 1:  # one tag seen (no entity at all yet): it is certain
            return {"coef": np.zeros((1, X.shape[1])), "intercept": np.zeros(1), "classes": np.unique(y)}
        lr = LogisticRegression(C=self.C, max_iter=300, random_state=self.seed).fit(X, y)
        return {"coef": lr.coef_, "intercept": lr.intercept_, "classes": lr.classes_}

    def _proba(self, feats: np.ndarray) -> np.ndarray:
        """Each word's probability of each of the tags the head was trained on (scikit-learn's predict_proba)."""
        lr = self._lr
        assert lr is not None
        if len(lr["classes"]) == 1:
            return np.ones((len(feats), 1))
        scores = feats @ lr["coef"].T + lr["intercept"]
        if len(lr["classes"]) == 2:
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - p, p])
        scores = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def _decode(self, text: str, feats: np.ndarray) -> tuple[tuple[Span, ...], float]:
        offsets = words(text)[:len(feats)]
        if not offsets:
            return (), 1.0
        probs = np.zeros((len(offsets), len(self.tags)))
        probs[:, self._lr["classes"]] = self._proba(feats)
        best = probs.argmax(axis=1)
        tags = [self.tags[k] for k in best]
        spans = bio_to_spans(offsets, tags, probs[np.arange(len(best)), best])
        outside = [probs[i, 0] for i, t in enumerate(tags) if t == OUTSIDE]
        return spans, item_raw_confidence(spans, outside)

    def predict(self, texts: Sequence[str], features: Sequence[np.ndarray]) -> list[SpanPrediction]:
        if self._lr is None:
            raise RuntimeError("the tagger is not trained")
        out = []
        for text, feats in zip(texts, features):
            spans, raw = self._decode(text, feats)
            if self._span_cal is not None and spans:
                calibrated = _isotonic(*self._span_cal, [s.confidence or 0.0 for s in spans])
                spans = tuple(s.model_copy(update={"confidence": float(c)}) for s, c in zip(spans, calibrated))
            conf = float(_isotonic(*self._item_cal, [raw])[0]) if self._item_cal is not None else raw
            out.append(SpanPrediction(spans, min(1.0, max(0.0, conf)), raw))
        return out

    def to_bytes(self) -> bytes:
        """A versioned zip of .npy arrays + meta.json (no pickle), deterministic for a given tagger."""
        if self._lr is None:
            raise RuntimeError("the tagger is not trained")
        meta = {"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, "entity_types": list(self.entity_types),
                "C": self.C, "seed": self.seed, "features": self.features, "metrics": self.metrics}
        arrays = dict(self._lr)
        for name, cal in (("span_cal", self._span_cal), ("item_cal", self._item_cal)):
            if cal is not None:
                arrays |= {f"{name}_x": cal[0], f"{name}_y": cal[1]}
        buf = io.BytesIO()
        fixed = (1980, 1, 1, 0, 0, 0)
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo("meta.json", fixed), json.dumps(meta, sort_keys=True))
            for name, array in sorted(arrays.items()):
                out = io.BytesIO()
                np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", fixed), out.getvalue())
        return buf.getvalue()

    @staticmethod
    def is_artifact(data: bytes) -> bool:
        """Whether these bytes are a span tagger's artifact (else, perhaps, a classification head's)."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return json.loads(zf.read("meta.json")).get("format") == ARTIFACT_FORMAT
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
            return False

    @staticmethod
    def from_bytes(data: bytes) -> SpanTagger:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                meta = json.loads(zf.read("meta.json"))
                if meta.get("format") != ARTIFACT_FORMAT or meta.get("version") != ARTIFACT_VERSION:
                    raise ValueError(f"not a {ARTIFACT_FORMAT} v{ARTIFACT_VERSION} artifact")
                arrays = {n.removesuffix(".npy"): np.lib.format.read_array(io.BytesIO(zf.read(n)), allow_pickle=False)
                          for n in zf.namelist() if n.endswith(".npy")}
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt span tagger artifact: {exc}") from exc
        tagger = SpanTagger(meta["entity_types"], C=meta["C"], seed=meta["seed"], features=meta["features"])
        tagger.metrics = meta.get("metrics", {})
        tagger._lr = {k: arrays[k] for k in ("coef", "intercept", "classes")}
        if "span_cal_x" in arrays:
            tagger._span_cal = (arrays["span_cal_x"], arrays["span_cal_y"])
        if "item_cal_x" in arrays:
            tagger._item_cal = (arrays["item_cal_x"], arrays["item_cal_y"])
        if tagger._lr["coef"].shape[1] != arrays["coef"].shape[1] or tagger._lr["classes"].max() >= len(tagger.tags):
            raise ValueError("span tagger artifact: its tags do not match its entity types")
        return tagger
