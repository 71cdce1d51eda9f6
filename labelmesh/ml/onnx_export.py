"""MiniLM as ONNX graphs (fp32 export, int8 dynamic quantisation), cached on disk by the weights' sha256."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from labelmesh.ml.encoder import mean_pool_normalize, packaged_model_dir, weights_fingerprint

VARIANTS = ("fp32", "int8")
CACHE_ENV = "LABELMESH_ONNX_CACHE"
# Part of the cache key: bump it whenever the export or the quantisation recipe changes, so a graph made
# the old way is never loaded as if it were the new one.
EXPORT_REVISION = 1
OPSET = 17
# Dynamic int8, chosen on all 13,083 BANKING77 texts against torch fp32 (2 CPUs, 2026-12-05): per-tensor
# weights gave min cosine .924 (first 1,024 texts); per-channel .972 min / .994 mean at 2,059 texts/s (all texts
# in one call; .979 in bench/encoder_onnx.py, which embeds train and test apart: int8 rows depend on their batch).
# Every weight-times-activation MatMul contributes (quantised alone: QKV .995 min, FFN in .990, FFN out .991),
# so no exclusion reached .99 min while staying 2x faster than torch: layer 0's FFN output in fp32 .985 at
# 1,890/s, every FFN output .988 at 1,365/s; SmoothQuant-style rescaling (alpha .5-.9) at best .985. The
# worst rows are short texts, with few tokens to average the noise out. Attention's activation-times-
# activation products stay fp32 (MatMulConstBOnly).
INT8_RECIPE = {"per_channel": True, "op_types_to_quantize": ["MatMul"], "extra_options": {"MatMulConstBOnly": True}}

# Exports done by this process, by variant: tests read it to prove that a cached graph is reused.
EXPORTS: Counter[str] = Counter()


class OnnxCacheError(RuntimeError):
    """A graph is missing from the cache and cannot be written there."""


def default_cache_dir() -> Path:
    """$LABELMESH_ONNX_CACHE, else $XDG_CACHE_HOME/labelmesh/onnx, else ~/.cache/labelmesh/onnx."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "labelmesh" / "onnx"


def graph_dir(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """Where the graphs of these exact weights live: one folder per (weights sha256, export revision)."""
    return (cache_dir or default_cache_dir()) / f"{weights_fingerprint(model_dir)[:16]}-r{EXPORT_REVISION}"


def ensure_graph(model_dir: Path | None = None, variant: str = "fp32", cache_dir: Path | None = None) -> Path:
    """The cached graph file for `variant`, exported (and for int8 quantised) first if it is not there yet."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    model_dir = model_dir or packaged_model_dir()
    folder = graph_dir(model_dir, cache_dir)
    path = folder / f"model-{variant}.onnx"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        source = ensure_graph(model_dir, "fp32", cache_dir) if variant == "int8" else None
        # Written beside the target and renamed into place: two processes starting at once each export, and
        # whichever renames last wins, but neither ever loads a half-written file.
        with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
            staged = Path(tmp) / path.name
            started = time.perf_counter()
            if variant == "fp32":
                export_fp32(model_dir, staged)
            else:
                quantize_int8(source, staged)
            os.replace(staged, path)
        EXPORTS[variant] += 1
        _record(folder, variant, model_dir, time.perf_counter() - started)
    except OSError as exc:
        raise OnnxCacheError(
            f"the {variant} ONNX graph is not in {folder} and cannot be written there ({exc}); export it "
            f"where it can be (python -m labelmesh.ml.onnx_export --cache-dir DIR, e.g. at image build) "
            f"and point {CACHE_ENV} at that directory"
        ) from exc
    return path


def export_fp32(model_dir: Path, dest: Path) -> None:
    """Trace the model plus mean pooling and normalisation into one graph: ids and mask in, embeddings out."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Eager attention: the SDPA path picks its mask handling with Python branches on the inputs (an all-ones
    # mask can be dropped), which a trace would freeze; eager always adds the mask as a bias.
    model = AutoModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager").eval()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return mean_pool_normalize(hidden, attention_mask)

    # Two rows, the second padded, so the traced graph exercises the mask.
    ids = torch.tensor([[101, 7592, 2088, 2003, 102], [101, 7592, 102, 0, 0]])
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer's warnings (Python branches on shapes, advanced indexing) are about this model's code paths
        # that the parity test and the bench check on real batches; in a service's first-start log they alarm.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEmbedding(), (ids, (ids != 0).long()), str(dest),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=OPSET, dynamo=False,  # the TorchScript exporter: no onnxscript dependency
        )


def quantize_int8(source: Path, dest: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, dest, weight_type=QuantType.QInt8, **INT8_RECIPE)


def _record(folder: Path, variant: str, model_dir: Path, seconds: float) -> None:
    """export.json beside the graphs: what made each one, for whoever finds the cache later."""
    import onnxruntime
    import torch

    meta_path = folder / "export.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta[variant] = {
        "weights_sha256": weights_fingerprint(model_dir), "revision": EXPORT_REVISION, "opset": OPSET,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "seconds": round(seconds, 2),
        "int8_recipe": INT8_RECIPE if variant == "int8" else None,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    staged = meta_path.with_suffix(".tmp")
    staged.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(staged, meta_path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export the packaged MiniLM to ONNX ahead of time (image build).")
    ap.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or ~/.cache/labelmesh/onnx")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--fresh", action="store_true", help="delete this revision's graphs first")
    args = ap.parse_args(argv)
    if args.fresh:
        shutil.rmtree(graph_dir(packaged_model_dir(), args.cache_dir), ignore_errors=True)
    for variant in args.variants.split(","):
        print(ensure_graph(None, variant, args.cache_dir))


if __name__ == "__main__":
    main()
