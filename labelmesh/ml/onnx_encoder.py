"""The packaged MiniLM run by ONNX Runtime on CPU: MiniLMEncoder's tokenisation and pooling, a faster forward pass."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from labelmesh.ml.encoder import (
    DEFAULT_CPU_BATCH,
    MINILM_NAME,
    MicroBatchEncoder,
    _force_offline,
    available_cpus,
    packaged_model_dir,
)
from labelmesh.ml.onnx_export import ensure_graph

INT8_SUFFIX = "-int8"


class OnnxEncoder(MicroBatchEncoder):
    """Sentence embeddings from the exported graph (pooling and normalisation are inside it), CPU only.

    The name decides which trained heads this encoder accepts (labelmesh/ml/artifact.py compares names
    exactly), by the rule the project already applies to fp16 (FP16_MIN_COSINE in encoder.py): a variant
    keeps torch's name only if every embedding stays within cosine 0.999 of torch's. The fp32 graph does
    (min .9999995 over all 13,083 BANKING77 texts, bench/results/encoder_onnx.json), so it is "minilm-l6-v2"
    and either backend serves the other's heads. The int8 graph does not (min .979, mean .994), so it is
    "minilm-l6-v2-int8". Its rows also depend on their micro-batch neighbours (dynamic quantisation takes one
    activation scale per batch tensor): a text embedded alone vs inside a batch of 32 differs by up to .017
    cosine. A head trained on torch's embeddings scored as well on int8's in the same bench (accuracy and
    ECE within 0.2 points and .002), so the separate name is caution, not a measured incompatibility.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        quantized: bool = False,
        max_tokens: int | None = None,
        batch_size: int | None = None,
        sort_by_length: bool = True,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        _force_offline()
        import onnxruntime as ort

        self._init_tokens(Path(model_dir) if model_dir is not None else packaged_model_dir(), max_tokens)
        self.variant = "int8" if quantized else "fp32"
        self.backend = "onnx" + (INT8_SUFFIX if quantized else "")
        base = MINILM_NAME if model_dir is None else self.model_dir.name
        self.name = base + (INT8_SUFFIX if quantized else "")
        self.device = "cpu"
        self.batch_size = batch_size or DEFAULT_CPU_BATCH
        self.sort_by_length = sort_by_length
        self.graph_path = ensure_graph(self.model_dir, self.variant, Path(cache_dir) if cache_dir else None)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cpus()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # The same reason as OMP_WAIT_POLICY=PASSIVE for torch (labelmesh/ml/encoder.py): idle pool threads that
        # spin take CPU from the event loop, the broker and the database sharing the service's cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(self.graph_path), options, providers=["CPUExecutionProvider"])
        self.dim = int(self._session.get_outputs()[0].shape[1])
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 of the graph file this encoder runs (so bench caches never mix backends)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            with self.graph_path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _embed_padded(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # InferenceSession.run is thread-safe and releases the GIL: the prelabeler's workers share one session.
        (embeddings,) = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return embeddings
