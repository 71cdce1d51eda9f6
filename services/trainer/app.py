"""The trainer service's wiring: its handlers (services/trainer/handlers.py) and its copy of item texts."""

from __future__ import annotations

from labelmesh.runtime.service import ServiceRuntime
from services.trainer.handlers import SERVICE, Trainer
from services.trainer.items import ItemTexts
from services.trainer.settings import TrainerSettings


def create_app(settings: TrainerSettings | None = None) -> ServiceRuntime:
    settings = settings or TrainerSettings()
    rt = ServiceRuntime(SERVICE, settings)
    trainer = Trainer(rt, settings)
    trainer.wire()
    ItemTexts(rt.db).attach(rt.bus)
    rt.component = trainer
    return rt
