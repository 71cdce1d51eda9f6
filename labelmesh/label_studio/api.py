"""Label Studio's HTTP API, as the bridge uses it (httpx). Authentication is Label Studio's current flow: a personal
access token (a JWT refresh token) is exchanged at /api/token/refresh/ for an access token, sent as Bearer, and
exchanged again when Label Studio answers 401 (access tokens are short-lived). Legacy `Token` keys are off by
default in new organisations and are not used."""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class LabelStudioError(RuntimeError):
    """Label Studio refused a request: the method, path, status and its answer."""


class LabelStudio:
    def __init__(self, url: str, personal_token: str, client: httpx.AsyncClient | None = None) -> None:
        if not personal_token:
            raise LabelStudioError("no Label Studio personal access token (set LABEL_STUDIO_TOKEN: Account & "
                                   "Settings > Personal Access Token)")
        self.url = url.rstrip("/")
        self.refresh_token = personal_token
        self.access: str | None = None
        self.http = client or httpx.AsyncClient(timeout=TIMEOUT)

    async def close(self) -> None:
        await self.http.aclose()

    async def _refresh(self) -> None:
        response = await self.http.post(f"{self.url}/api/token/refresh/", json={"refresh": self.refresh_token})
        if response.status_code != 200:
            raise LabelStudioError(f"Label Studio refused the personal access token at /api/token/refresh/: "
                                   f"{response.status_code} {response.text[:300]}")
        self.access = response.json()["access"]

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        if self.access is None:
            await self._refresh()
        for attempt in (1, 2):
            response = await self.http.request(method, f"{self.url}{path}",
                                               headers={"Authorization": f"Bearer {self.access}"}, **kw)
            if response.status_code == 401 and attempt == 1:
                await self._refresh()
                continue
            if response.status_code >= 400:
                raise LabelStudioError(f"{method} {path}: {response.status_code} {response.text[:500]}")
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    async def create_project(self, title: str, label_config: str, description: str = "") -> dict[str, Any]:
        return await self.request("POST", "/api/projects/", json={
            "title": title[:50], "label_config": label_config, "description": description,
            "show_collab_predictions": True})

    async def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("POST", f"/api/projects/{project_id}/import", json=tasks)

    async def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of a project with its data and annotations (paged)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.request("GET", "/api/tasks/", params={"project": project_id, "page": page,
                                                                     "page_size": 100, "fields": "all"})
            batch = body["tasks"] if isinstance(body, dict) else body
            found += batch
            if len(batch) < 100:
                return found
            page += 1

    async def users(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/api/users/")

    async def connect_backend(self, project_id: int, url: str, title: str = "labelmesh") -> dict[str, Any]:
        return await self.request("POST", "/api/ml/", json={"project": project_id, "url": url, "title": title,
                                                            "is_interactive": False})

    async def annotation(self, annotation_id: int) -> dict[str, Any] | None:
        """Label Studio's own record of an annotation, or None if it no longer exists."""
        try:
            return await self.request("GET", f"/api/annotations/{int(annotation_id)}/")
        except LabelStudioError as exc:
            if ": 404 " in str(exc):
                return None
            raise

    async def delete_task(self, task_id: int) -> None:
        await self.request("DELETE", f"/api/tasks/{int(task_id)}/")

    async def task(self, task_id: int) -> dict[str, Any]:
        return await self.request("GET", f"/api/tasks/{int(task_id)}/")
