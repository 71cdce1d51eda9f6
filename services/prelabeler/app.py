"""The prelabeler service's wiring: its encoder (CPU threads or a GPU, fp16 where it holds) and handlers."""

from __future__ import annotations

import logging

from labelmesh.ml.encoder import FP16_MIN_COSINE, Encoder, available_cpus, keep_half_precision, load_encoder
from labelmesh.runtime.service import ServiceRuntime
from services.prelabeler.concurrency import encode_plan
from services.prelabeler.handlers import SERVICE, Prelabeler
from services.prelabeler.settings import PrelabelerSettings

log = logging.getLogger(__name__)


def create_app(settings: PrelabelerSettings | None = None, encoder: Encoder | None = None) -> ServiceRuntime:
    settings = settings or PrelabelerSettings()
    rt = ServiceRuntime(SERVICE, settings)
    plan = encode_plan(settings.device, available_cpus(), settings.encode_workers)
    if encoder is None:
        encoder = load_encoder(settings.encoder, settings.device, threads=plan.threads)
        if str(getattr(encoder, "device", "cpu")).startswith("cuda"):  # "auto" found a GPU
            plan = encode_plan("cuda", available_cpus(), settings.encode_workers)
            if settings.fp16:
                half = load_encoder(settings.encoder, settings.device, fp16=True, threads=plan.threads)
                encoder, cosine = keep_half_precision(encoder, half)
                log.info("fp16 %s: smallest cosine to fp32 over the probe texts %.5f (needs %.3f)",
                         "kept" if encoder is half else "refused", cosine, FP16_MIN_COSINE)
    log.info("embedding %d chunk(s) at a time, %d torch thread(s) each", plan.workers, plan.threads)
    service = Prelabeler(rt, settings, encoder, plan.workers)
    service.wire()
    rt.component = service
    return rt
