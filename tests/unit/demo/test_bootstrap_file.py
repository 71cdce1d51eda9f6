"""Reading the bootstrap file: CSV or JSON lines, ids kept or made, bad rows named."""

import json

import pytest

from labelmesh.bootstrap import BadRow, read_rows


def test_csv_with_category_column_and_generated_ids(tmp_path):
    path = tmp_path / "seed.csv"
    path.write_text("text,category\nmy card is lost,lost_or_stolen_card\nwhere is my card,card_arrival\n")
    rows = read_rows(path)
    assert [(r.item_id, r.text, r.label) for r in rows] == [
        ("seed-0", "my card is lost", "lost_or_stolen_card"), ("seed-1", "where is my card", "card_arrival")]


def test_jsonl_keeps_ids_and_limit_stops_early(tmp_path):
    path = tmp_path / "seed.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"x{i}", "text": f"t{i}", "label": "a"}) for i in range(5)) + "\n")
    assert [r.item_id for r in read_rows(path, limit=2)] == ["x0", "x1"]


@pytest.mark.parametrize(("content", "message"), [
    ("text,label\n,card_arrival\n", "row 1: no text"),
    ("text,label\nhello,\n", "row 1: no label"),
])
def test_bad_csv_rows_are_named(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(BadRow, match=message):
        read_rows(path)


def test_bad_json_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "b"}\n{not json\n')
    with pytest.raises(BadRow, match="line 2: not JSON"):
        read_rows(path)
