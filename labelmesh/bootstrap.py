"""Bootstrap a project's first model from a small labelled file, through the front door.

The rows are ingested over gRPC as trusted labels; the prelabeler embeds them, qc finalises them, the
trainer trains model v1 on them and publishes `model.updated` exactly as it does for every later model.
Nothing is written to any service's database from here.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from labelmesh.client import GatewayClient
from labelmesh.datasets import Row
from labelmesh.runtime.settings import CommonSettings
from schemas.rpc import gateway_pb2 as pb

TEXT_COLUMNS = ("text",)
LABEL_COLUMNS = ("label", "category")
ID_COLUMNS = ("item_id", "id")


class BadRow(ValueError):
    """A row of the bootstrap file that cannot be used; the message says which and why."""


def _pick(record: dict[str, Any], names: Sequence[str]) -> Any:
    return next((record[n] for n in names if record.get(n) not in (None, "")), None)


def _rows(records: Iterable[dict[str, Any]], source: str, limit: int | None) -> list[Row]:
    rows: list[Row] = []
    for number, record in enumerate(records, 1):
        if limit is not None and len(rows) >= limit:
            break
        text, label = _pick(record, TEXT_COLUMNS), _pick(record, LABEL_COLUMNS)
        if not isinstance(text, str) or not text.strip():
            raise BadRow(f"{source} row {number}: no text")
        if not isinstance(label, str) or not label.strip():
            raise BadRow(f"{source} row {number}: no label (expected a 'label' or 'category' field)")
        item_id = _pick(record, ID_COLUMNS) or f"{Path(source).stem}-{number - 1}"
        rows.append(Row(str(item_id), text, label))
    return rows


def read_rows(path: Path, limit: int | None = None) -> list[Row]:
    """Rows from a CSV (header with text and label/category, optional item_id/id) or a JSON-lines file."""
    if path.suffix in (".jsonl", ".ndjson"):
        with path.open() as handle:
            records = []
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise BadRow(f"{path} line {number}: not JSON ({exc.msg})") from exc
            return _rows(records, str(path), limit)
    with path.open(newline="") as handle:
        return _rows(csv.DictReader(handle), str(path), limit)


async def ingest_trusted(client: GatewayClient, project: str, rows: Sequence[Row], batch: int = 500) -> int:
    """Ingest rows as trusted labels in batches; returns how many the gateway accepted."""
    accepted = 0
    for start in range(0, len(rows), batch):
        response = await client.ingest_items([
            pb.IngestItem(project=project, item_id=r.item_id, text=r.text, trusted_label=r.label, source="bootstrap")
            for r in rows[start:start + batch]
        ])
        accepted += response.accepted
    return accepted


async def wait_for_model(settings: CommonSettings, project: str, after: datetime | None = None,
                         timeout_s: float = 600.0) -> dict[str, Any]:
    """The project's first `model.updated` event published after `after`, read from the topic."""
    consumer = AIOKafkaConsumer(settings.topic("model.updated"), bootstrap_servers=settings.kafka_bootstrap,
                                group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = json.loads(record.value)
                        if event.get("project") != project:
                            continue
                        if after is None or datetime.fromisoformat(event["occurred_at"]) >= after:
                            return event
    finally:
        await consumer.stop()
