"""Reading and checking an ingest file: every bad-input case names its rows, and memory stays bounded."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelmesh.ingest_file import BadFile, Columns, Validated, stable_id

LABELS = ["pos", "neg"]


def _check(path: Path, columns: Columns = Columns(), labels: list[str] | None = LABELS) -> Validated:
    checked = Validated(path, columns, labels)
    checked.raise_for_errors()
    return checked


def _check_with(path: Path, text_max: int) -> Validated:
    checked = Validated(path, Columns(), LABELS, text_max=text_max)
    checked.raise_for_errors()
    return checked


def test_csv_jsonl_and_parquet_give_the_same_items_with_metadata(tmp_path: Path) -> None:
    records = [{"id": "a", "text": "good", "gold": "pos", "year": "1999"}, {"id": "b", "text": "bad", "gold": "", "year": "2001"}]
    csv_file = tmp_path / "f.csv"
    csv_file.write_text("id,text,gold,year\na,good,pos,1999\nb,bad,,2001\n")
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    parquet = tmp_path / "f.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    seen = []
    for path in (csv_file, jsonl, parquet):
        checked = _check(path, Columns("text", "id", "gold"))
        seen.append([(r.item_id, r.text, r.golden, r.metadata) for r in checked.items()])
        checked.close()
    assert seen[0] == seen[1] == seen[2] == [("a", "good", "pos", {"year": "1999"}), ("b", "bad", None, {"year": "2001"})]


def test_rows_without_an_id_get_a_stable_hash_and_repeats_are_sent_once(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("text\nsame\nother\nsame\n")
    checked = _check(path)
    assert [r.item_id for r in checked.items()] == [stable_id("same"), stable_id("other")]
    assert (checked.report.rows, checked.report.items) == (3, 2)


def test_no_text_column_names_the_columns_there_are(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("body,id\nhello,1\n")
    with pytest.raises(BadFile, match=r"no column 'text'; the file has \['body', 'id'\]"):
        _check(path)


def test_duplicate_ids_with_different_text_name_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("id,text\n1,a\n2,b\n1,a\n2,changed\n")
    with pytest.raises(BadFile, match=r"row 4: id '2' was already used by row 2 with a different text"):
        _check(path, Columns(id="id"))


def test_golden_labels_outside_the_taxonomy_name_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"text": "a", "g": "pos"}\n{"text": "b", "g": "meh"}\n{"text": "c", "g": "nope"}\n')
    with pytest.raises(BadFile) as err:
        _check(path, Columns(golden="g"))
    assert "row 2: golden label 'meh'" in str(err.value) and "row 3: golden label 'nope'" in str(err.value)
    assert "nothing was ingested" in str(err.value)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes("text\nfine\ncaf\u00e9 latin-1\n".encode("latin-1"))
    with pytest.raises(BadFile, match=r"line 3: not UTF-8"):
        _check(path)


@pytest.mark.parametrize("content", ["", "text\n"])
def test_an_empty_file_or_one_without_rows_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(BadFile, match="empty|no rows"):
        _check(path)


def test_empty_text_and_an_unknown_format_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("text\nok\n  \n")
    with pytest.raises(BadFile, match="row 2: the text is empty"):
        _check(path)
    with pytest.raises(BadFile, match="unknown format '.xlsx'"):
        _check(tmp_path / "f.xlsx")


def _peak_bytes(path: Path, rows: int) -> int:
    """Peak Python allocation of the check and the sending pass over a CSV of `rows` rows of ~1 KB."""
    body = "x" * 990
    with path.open("w") as handle:
        handle.write("id,text,gold\n")
        for n in range(rows):
            handle.write(f"{n},{n} {body},{'pos' if n % 50 == 0 else ''}\n")
    tracemalloc.start()
    try:
        checked = _check(path, Columns("text", "id", "gold"))
        sent = sum(1 for _ in checked.items())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    checked.close()
    assert sent == rows
    return peak


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Ten times the rows, the same peak: the file streams (bench/ingest_memory.py measures a 200 MB file)."""
    small, large = _peak_bytes(tmp_path / "small.csv", 1_000), _peak_bytes(tmp_path / "large.csv", 10_000)
    assert large < small + 1024 * 1024, f"peak {small / 2**20:.1f} MiB for 1 MB, {large / 2**20:.1f} MiB for 10 MB"


def test_what_the_gateway_would_refuse_is_refused_before_sending(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("text,note\n" + "a" * 41 + ",ok\nfine," + "n" * 4001 + "\nfine,ok,surplus\n")
    with pytest.raises(BadFile) as err:
        _check_with(path, text_max=40)
    assert "row 1: the text has 41 characters; the gateway takes at most 40" in str(err.value)
    assert "row 2: column 'note' holds 4001 characters" in str(err.value)
    assert "row 3: 1 field(s) more than the header's columns" in str(err.value)
    wide = tmp_path / "wide.jsonl"
    wide.write_text(json.dumps({"text": "t", **{f"c{n}": "v" for n in range(65)}}) + "\n")
    with pytest.raises(BadFile, match="row 1: 65 metadata columns; the gateway keeps at most 64"):
        _check(wide)


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext,lang\nhello,en\n".encode())
    checked = _check(path)
    assert [(r.text, r.metadata) for r in checked.items()] == [("hello", {"lang": "en"})]
    checked.close()
