"""Encoders: the hashing stub and the packaged all-MiniLM-L6-v2 (real weights, a handful of texts)."""

import numpy as np
import pytest

from labelmesh.ml.encoder import (
    FP16_PROBE_TEXTS,
    Encoder,
    HashingEncoder,
    keep_half_precision,
    load_encoder,
    min_cosine,
)

SIMILAR = ("How do I reset my card PIN?", "I forgot the PIN code of my card")
UNRELATED = "The weather in Lisbon is sunny today"


def cos(a, b):
    return float(np.dot(a, b))


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm", device="cpu")


def test_hashing_encoder_is_deterministic_and_unit_norm():
    texts = ["top up my card", "where is my card?", "", "!!!"]
    a, b = HashingEncoder().encode(texts), load_encoder("hashing").encode(texts)
    assert a.dtype == np.float32 and a.shape == (4, 384)
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert load_encoder("hashing-64").encode(texts).shape == (4, 64)


def test_hashing_encoder_puts_shared_words_closer():
    e = HashingEncoder().encode([*SIMILAR, UNRELATED, "How do I reset my PIN?"])
    assert cos(e[0], e[3]) > cos(e[0], e[2])


def test_unknown_spec_is_rejected():
    with pytest.raises(ValueError, match="unknown encoder spec"):
        load_encoder("bert-huge")


def test_minilm_shape_norm_and_protocol(minilm):
    e = minilm.encode(["hello", "a much longer sentence about a card payment", ""])
    assert isinstance(minilm, Encoder) and minilm.name == "minilm-l6-v2"
    assert e.dtype == np.float32 and e.shape == (3, 384) == (3, minilm.dim)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_similar_sentences_are_closer_than_unrelated(minilm):
    a, b, c = minilm.encode([*SIMILAR, UNRELATED])
    assert cos(a, b) > 0.5 > cos(a, c)


def test_minilm_flags_truncation(minilm):
    result = minilm.encode_with_info(["short text", "card " * 1000])
    assert minilm.max_tokens == 256
    assert result.truncated.tolist() == [False, True]
    assert result.n_tokens[1] == 256 and result.n_tokens[0] < 10


def test_minilm_length_sorting_keeps_input_order(minilm):
    texts = ["a", "a much longer sentence about a lost card and a refund", "mid length text here"]
    together = minilm.encode(texts)
    alone = np.vstack([minilm.encode([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_path_spec_loads_any_model_directory(minilm):
    other = load_encoder(f"path:{minilm.model_dir}", device="cpu")
    assert other.name == minilm.model_dir.name and other.fingerprint == minilm.fingerprint
    assert np.allclose(other.encode(SIMILAR), minilm.encode(SIMILAR), atol=1e-6)


def test_minilm_matches_sentence_transformers_reference(minilm):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm.model_dir), device="cpu")
    texts = [*SIMILAR, UNRELATED, "card " * 300]
    ours, theirs = minilm.encode(texts), reference.encode(texts, normalize_embeddings=True)
    assert (ours * theirs).sum(axis=1).min() > 0.9999


class Perturbed:
    """Another encoder's embeddings with a fixed disturbance: stands in for an fp16 copy of it."""

    def __init__(self, base, noise: float = 0.0, round_to_fp16: bool = False) -> None:
        self.base, self.noise, self.round_to_fp16 = base, noise, round_to_fp16
        self.name, self.dim = base.name, base.dim

    def encode(self, texts):
        X = self.base.encode(texts)
        if self.round_to_fp16:
            X = X.astype(np.float16).astype(np.float32)
        return X + self.noise * np.random.default_rng(0).normal(size=X.shape).astype(np.float32)


def test_min_cosine_is_the_worst_row():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert min_cosine(a, b) == pytest.approx(0.0)
    assert min_cosine(a, a * 5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        min_cosine(a, b[:2])


def test_half_precision_is_kept_only_when_it_embeds_like_fp32(minilm):
    rounded = Perturbed(minilm, round_to_fp16=True)
    chosen, cosine = keep_half_precision(minilm, rounded)
    assert chosen is rounded and 0.999 <= cosine <= 1.0
    # 0.01 per coordinate on unit vectors of 384 dimensions: cosine ~0.98, far outside the bar.
    noisy = Perturbed(minilm, noise=0.01)
    chosen, cosine = keep_half_precision(minilm, noisy)
    assert chosen is minilm and cosine < 0.999


def test_the_fp16_probe_reaches_the_token_limit(minilm):
    result = minilm.encode_with_info(list(FP16_PROBE_TEXTS))
    assert result.truncated[-1] and result.n_tokens.max() == minilm.max_tokens
    assert result.n_tokens.min() <= 3
