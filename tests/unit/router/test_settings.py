"""Each router setting that a domain rule also defaults is that rule's default, not a second copy."""

from __future__ import annotations

import inspect

from services.router.domain.evidence import record_verified
from services.router.domain.spot_check import is_evidence_draw, is_spot_checked
from services.router.domain.thresholds import conservative_shift, learn_thresholds
from services.router.domain.tiers import RoutingPolicy
from services.router.settings import RouterSettings


def _default(function: object, name: str) -> object:
    return inspect.signature(function).parameters[name].default  # type: ignore[arg-type]


def test_the_router_settings_default_to_the_domain_rules_defaults() -> None:
    fields = {name: f.default for name, f in RouterSettings.model_fields.items()}
    policy = RoutingPolicy()
    assert fields["spot_check_rate"] == _default(is_spot_checked, "rate")
    assert fields["evidence_draw_rate"] == _default(is_evidence_draw, "rate")
    assert (fields["expert_margin"], fields["ood_similarity_floor"]) == (policy.expert_margin,
                                                                         policy.ood_similarity_floor)
    assert fields["relearn_every"] == _default(record_verified, "relearn_every")
    assert fields["min_evidence"] == _default(learn_thresholds, "min_evidence")
    assert fields["conservative_shift"] == _default(conservative_shift, "amount")
