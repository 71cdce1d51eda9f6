"""The bridge's configuration: one JSON file per labelmesh project shown in Label Studio.

Written by `labelmesh label-studio init` and `... map-user` (mode 0600: it holds the mapped annotators'
labelmesh tokens); read by the backend and the sync. Label Studio's own token is never stored here: it comes
from LABEL_STUDIO_TOKEN (a personal access token, exchanged for short-lived access tokens).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


class MappedUser(BaseModel):
    """A Label Studio user who labels as a labelmesh annotator."""

    email: str = Field(min_length=3, max_length=254)
    ls_user_id: int = Field(ge=1)
    annotator: str = Field(min_length=1, max_length=128)
    token: str = Field(min_length=1, max_length=512, repr=False)


class BridgeConfig(BaseModel):
    project: str = Field(min_length=1, max_length=128, description="the labelmesh project")
    label_studio_url: str = Field(min_length=1, max_length=2048)
    ls_project_id: int = Field(ge=1)
    gateway: str = Field(default="127.0.0.1:50051", max_length=256)
    ca_cert: str | None = None
    ledger: str = Field(default="", description="the backend's record of submitted annotations (SQLite)")
    users: list[MappedUser] = Field(default_factory=list, max_length=10_000)

    @classmethod
    def load(cls, path: Path) -> BridgeConfig:
        config = cls.model_validate_json(path.read_text(encoding="utf-8"))
        if not config.ledger:
            config.ledger = str(path.with_suffix(".ledger.sqlite"))
        return config

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        os.chmod(path, 0o600)

    def by_ls_user(self, ls_user_id: int) -> MappedUser | None:
        return next((u for u in self.users if u.ls_user_id == ls_user_id), None)

    def by_annotator(self, annotator: str) -> MappedUser | None:
        return next((u for u in self.users if u.annotator == annotator), None)

    def ca_bytes(self) -> bytes | None:
        return Path(self.ca_cert).read_bytes() if self.ca_cert else None
