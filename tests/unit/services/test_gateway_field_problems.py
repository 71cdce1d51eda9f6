"""A request with several problems is refused naming each by field (sent as a google.rpc BadRequest detail), and
its message says each; one problem reads as it always did."""

from __future__ import annotations

import pytest

from services.gateway.domain.annotators import credentials
from services.gateway.domain.bounds import GUIDELINES_MAX_CHARS
from services.gateway.domain.projects import configured
from services.gateway.domain.refusals import Refused


def test_every_problem_of_a_configure_project_request_is_named() -> None:
    with pytest.raises(Refused) as info:
        configured("p", ["a"], "g" * (GUIDELINES_MAX_CHARS + 1), 12, 1.5, None)
    assert [field for field, _ in info.value.fields] == ["labels", "guidelines", "multi_annotators",
                                                         "target_auto_error"]
    assert str(info.value).startswith("a project needs at least two labels; guidelines are longer than")
    with pytest.raises(Refused) as info:
        configured("p", ["a", "b"], "", 12, 0.0, None)
    assert (str(info.value), info.value.fields) == ("multi_annotators must be between 2 and 9", (
        ("multi_annotators", "multi_annotators must be between 2 and 9"),))


def test_every_problem_of_a_create_annotator_request_is_named() -> None:
    with pytest.raises(Refused) as info:
        credentials("admin", "king", [], 1_000, 1_000.0)
    assert info.value.code == "invalid"
    assert [field for field, _ in info.value.fields] == ["annotator_id", "role", "projects", "expires_unix_ms"]
