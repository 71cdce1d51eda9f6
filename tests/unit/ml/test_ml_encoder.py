"""Encoders: the hashing stub and the packaged all-MiniLM-L6-v2 (real weights, a handful of texts)."""

import numpy as np
import pytest

from labelmesh.ml.encoder import Encoder, HashingEncoder, load_encoder

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
