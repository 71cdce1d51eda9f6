"""Prelabeler settings (LABELMESH_PRELABELER_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from labelmesh.runtime.settings import CommonSettings


class PrelabelerSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="LABELMESH_PRELABELER_", extra="ignore")

    # "minilm" (PyTorch; CPU or CUDA), "onnx" / "onnx-int8" (ONNX Runtime, CPU only; labelmesh.ml.onnx_encoder) or
    # "hashing" (stub). minilm stays the CPU default on bench/results/encoder_onnx.json (2 shared CPUs, this
    # service's plan of two one-thread workers, 5 alternating rounds): onnx fp32 ran 1.06x torch, short of the 2x
    # goal; onnx-int8 ran 2.75x (1.99x as one call on two threads), test accuracy -0.4 points at 500 rows (mean
    # of 3 draws) and +0.2 on all rows, ECE within .003, but its minimum cosine to torch is .979 against the
    # goal's 0.99 (mean .994; 3% of BANKING77 texts below .99). If the goal is read as a mean, int8 qualifies.
    # onnx fp32 keeps minilm's encoder name, so switching to it needs no retraining; onnx-int8 has its own,
    # so heads trained under minilm are rejected until the trainer retrains on int8 embeddings.
    encoder: str = "minilm"
    device: str = "cpu"
    # CUDA only (ignored on CPU): run the encoder in half precision. At start the service embeds a probe set both
    # ways and keeps fp16 only if every embedding is within cosine 0.999 of fp32 (labelmesh.ml.encoder
    # .keep_half_precision); otherwise it runs fp32 and says so in its log. Off by default: whether fp16 is
    # faster on a given GPU is for bench/model_throughput.py --device cuda --fp16 to show first.
    fp16: bool = False
    # Items per consumed batch at most (a burst fills it; a trickle waits max_wait_ms). Embedded in pieces of
    # encode_piece (0 = concurrency.piece_size: 128 for MiniLM on CPU, 512 on CUDA), longest texts first, while
    # what is done is stored and published every publish_chunk items (bench/pipeline_throughput.py).
    max_batch: int = 1024
    encode_piece: int = 0
    publish_chunk: int = 256
    # Pieces embedded at the same time, each with its share of the CPUs' torch threads. 0 = one per CPU on CPU
    # (one thread each), one on CUDA. On 2 CPUs two single-threaded chunks at once embedded 258-270 texts/s
    # against 213-217 for one chunk at a time on two threads (MiniLM, chunks of 256, same process and texts):
    # small matrices split poorly across threads, and a thread the event loop delays stalls its partner.
    encode_workers: int = 0
    max_wait_ms: int = 50
    top_k: int = 5
    max_text_chars: int = 20_000
    http_port: int = 9101
