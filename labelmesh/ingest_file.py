"""Reading a team's CSV, JSONL or Parquet file for ingest: a streaming validation pass, then batches of items.

Nothing is sent until the whole file has passed, so a bad file ingests nothing. The pass checks what the
gateway would refuse (ids, empty or over-long text, metadata bounds, golden labels outside the project's labels),
so a file that passes is not refused half-way for its content. Memory stays bounded for any file size: rows are
read one at a time and the id-to-text check lives in a temporary SQLite file (bench/ingest_memory.py).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.gateway.domain.bounds import ID_MAX, METADATA_KEYS, METADATA_VALUE_CHARS

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
MAX_ERRORS = 20


class BadFile(ValueError):
    """The file cannot be ingested; the message names the rows and what is wrong with each."""


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    id: str | None = None
    golden: str | None = None


@dataclass
class Row:
    number: int  # 1-based data row (the CSV header is not a row)
    item_id: str
    text: str
    golden: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    extra_fields: int = 0  # CSV fields beyond the header's columns


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BadFile(f"{path}: unknown format {path.suffix!r}; expected .csv, .jsonl or .parquet") from None


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """(row number, record, the file's columns) one row at a time."""
    kind = file_format(path)
    if path.stat().st_size == 0:
        raise BadFile(f"{path}: the file is empty")
    if kind != "parquet":
        _check_utf8(path)
    number = 0
    if kind == "csv":
        # utf-8-sig: a spreadsheet's CSV often starts with a byte-order mark, which would stick to the first column.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            for number, record in enumerate(reader, 1):
                yield number, record, columns
    elif kind == "jsonl":
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                number += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BadFile(f"{path} row {number}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise BadFile(f"{path} row {number}: a JSON object is expected")
                yield number, record, list(record)
    else:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        columns = parquet.schema_arrow.names
        for batch in parquet.iter_batches(batch_size=1000):
            for record in batch.to_pylist():
                number += 1
                yield number, record, columns


def _check_utf8(path: Path) -> None:
    """Line by line, so the error names the line (a decoder reading ahead in blocks cannot)."""
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadFile(f"{path} line {line_number}: not UTF-8 ({exc.reason} at column {exc.start + 1}); "
                              "convert the file, e.g. iconv -f latin1 -t utf-8") from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def stable_id(text: str) -> str:
    """An item id for a row without one: the same text gets the same id, so a re-run ingests nothing twice."""
    return "t-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def rows(path: Path, columns: Columns) -> Iterator[Row]:
    """The file's rows as items; raises BadFile at the first structural problem (missing column, encoding)."""
    checked = False
    for number, record, names in _records(path):
        if not checked:
            missing = [c for c in (columns.text, columns.id, columns.golden) if c and c not in names]
            if missing:
                raise BadFile(f"{path}: no column {', '.join(map(repr, missing))}; the file has {names}")
            checked = True
        text = _text(record.get(columns.text))
        item_id = _text(record.get(columns.id)).strip() if columns.id else stable_id(text)
        golden = _text(record.get(columns.golden)).strip() if columns.golden else ""
        skip = {columns.text, columns.id, columns.golden}
        metadata = {k: _text(v) for k, v in record.items() if k not in skip and k is not None}
        extra = record.get(None) or []  # csv.DictReader's key for the fields past the header's columns
        yield Row(number, item_id, text, golden or None, metadata, len(extra))
    if not checked:
        raise BadFile(f"{path}: the file has no rows")


@dataclass
class Report:
    rows: int = 0
    items: int = 0  # rows minus repeats of the same id and text
    golden: int = 0
    errors: list[str] = field(default_factory=list)
    more_errors: int = 0

    def add(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)
        else:
            self.more_errors += 1


def default_text_max() -> int:
    """The gateway's default bound on an item's text (LABELMESH_GATEWAY_MAX_TEXT_CHARS), defined there once."""
    from services.gateway.settings import GatewaySettings  # noqa: PLC0415 - only for its default

    return int(GatewaySettings.model_fields["max_text_chars"].default)


def metadata_problem(metadata: dict[str, str]) -> str | None:
    """Why the gateway would refuse a row's metadata (the columns besides text, id and golden), or None."""
    if len(metadata) > METADATA_KEYS:
        return f"{len(metadata)} metadata columns; the gateway keeps at most {METADATA_KEYS}"
    for key, value in metadata.items():
        if len(key) > ID_MAX:
            return f"column name {key[:40]!r}... is longer than {ID_MAX} characters"
        if len(value) > METADATA_VALUE_CHARS:
            return f"column {key!r} holds {len(value)} characters; metadata values are at most {METADATA_VALUE_CHARS}"
    return None


class Validated:
    """One streaming pass over the file; afterwards `items()` streams what to send (repeats left out)."""

    def __init__(self, path: Path, columns: Columns, labels: list[str] | None = None,
                 text_max: int | None = None) -> None:
        self.path, self.columns = path, columns
        self.text_max = text_max if text_max is not None else default_text_max()
        self._dir = tempfile.TemporaryDirectory(prefix="labelmesh-ingest-")
        self._db = sqlite3.connect(Path(self._dir.name) / "ids.sqlite")
        self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, digest BLOB, row INTEGER)")
        self.report = self._check(set(labels) if labels is not None else None)

    def _check(self, labels: set[str] | None) -> Report:
        report = Report()
        for row in rows(self.path, self.columns):
            report.rows += 1
            where = f"row {row.number}"
            if row.extra_fields:
                report.add(f"{where}: {row.extra_fields} field(s) more than the header's columns")
            if not row.text.strip():
                report.add(f"{where}: the text is empty")
            elif len(row.text) > self.text_max:
                report.add(f"{where}: the text has {len(row.text)} characters; the gateway takes at most "
                           f"{self.text_max}")
            if (problem := metadata_problem(row.metadata)) is not None:
                report.add(f"{where}: {problem}")
            if not row.item_id or len(row.item_id) > ID_MAX:
                report.add(f"{where}: the id must be 1..{ID_MAX} characters")
                continue
            if row.golden is not None:
                report.golden += 1
                if labels is not None and row.golden not in labels:
                    report.add(f"{where}: golden label {row.golden!r} is not in the project's labels")
            digest = hashlib.sha256(row.text.encode()).digest()
            seen = self._db.execute("SELECT digest, row FROM ids WHERE id = ?", (row.item_id,)).fetchone()
            if seen is None:
                self._db.execute("INSERT INTO ids VALUES (?, ?, ?)", (row.item_id, digest, row.number))
                report.items += 1
            elif seen[0] != digest:
                report.add(f"{where}: id {row.item_id!r} was already used by row {seen[1]} with a different text")
        self._db.commit()
        return report

    def raise_for_errors(self) -> None:
        r = self.report
        if r.errors:
            more = f"\n  ... and {r.more_errors} more" if r.more_errors else ""
            raise BadFile(f"{self.path}: {len(r.errors) + r.more_errors} problem(s); nothing was ingested:\n  "
                          + "\n  ".join(r.errors) + more)

    def items(self) -> Iterator[Row]:
        """The rows to send: each id once (at its first row)."""
        self.raise_for_errors()
        for row in rows(self.path, self.columns):
            first = self._db.execute("SELECT row FROM ids WHERE id = ?", (row.item_id,)).fetchone()
            if first and first[0] == row.number:
                yield row

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()
