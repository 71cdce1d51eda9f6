"""`labelmesh qc-report`: print the calibration-session report read from qc's database."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from pymongo import AsyncMongoClient

from services.qc.report import session_report
from services.qc.settings import QcSettings


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _report(project: str, top: int, **selection: object) -> str:
    settings = QcSettings()
    client: AsyncMongoClient = AsyncMongoClient(settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        report = await session_report(client[settings.database_name("qc")], project, **selection)
    finally:
        await client.close()
    return report.to_markdown(top)


def main(project: str, *, since: str | None = None, until: str | None = None, min_annotators: int = 2,
         top: int = 10, session: str | None = None) -> int:
    try:
        text = asyncio.run(_report(project, top, since=_when(since), until=_when(until),
                                   min_annotators=min_annotators, session=session))
    except ValueError as exc:
        print(f"qc-report: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0
