"""Pre-labelling model: sentence encoders, a calibrated linear head, and calibration metrics.

Pure library code (no Kafka, Mongo or gRPC): the prelabeler and trainer services wrap it.
Heavy imports (torch, transformers, onnxruntime) happen only when a MiniLM encoder is loaded.
"""

from labelmesh.ml.calibration import (
    IsotonicTopLabel,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from labelmesh.ml.encoder import EncodeResult, Encoder, HashingEncoder, MiniLMEncoder, load_encoder
from labelmesh.ml.head import TrainedHead, sha256_hex, train_head

__all__ = [
    "EncodeResult",
    "Encoder",
    "HashingEncoder",
    "IsotonicTopLabel",
    "MiniLMEncoder",
    "TrainedHead",
    "expected_calibration_error",
    "fit_temperature",
    "load_encoder",
    "negative_log_likelihood",
    "sha256_hex",
    "softmax",
    "train_head",
]
