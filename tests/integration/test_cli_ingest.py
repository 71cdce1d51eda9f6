"""`labelmesh ingest` against a real gateway: every bad file is refused with its rows and ingests nothing, and a
batch the gateway refuses part-way is reported with exactly the rows that went in."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelmesh.admin_cli import INGEST_BATCH
from labelmesh.client import GatewayClient
from tests.gateway_helpers import ADMIN, LABELS, PROJECT, run_cli
from tests.kafka_helpers import Env

REPO = Path(__file__).resolve().parents[2]

BAD_FILES = [  # (file name, content, extra options, what the error must say)
    ("no-text.csv", b"id,body\n1,hello\n", [], "no column 'text'; the file has ['id', 'body']"),
    ("dup.csv", b"id,text\n1,a\n2,b\n1,changed\n", ["--id-column", "id"],
     "row 3: id '1' was already used by row 1 with a different text"),
    ("golden.jsonl", b'{"text": "a", "g": "yes"}\n{"text": "b", "g": "purple"}\n', ["--golden-column", "g"],
     "row 2: golden label 'purple' is not in the project's labels"),
    ("latin1.csv", "text\nfine\ncaf\u00e9\n".encode("latin-1"), [], "line 3: not UTF-8"),
    ("empty.csv", b"", [], "the file is empty"),
    ("header-only.csv", b"text\n", [], "the file has no rows"),
    ("extra-field.csv", b"text,lang\nok,en\nbroken,en,surplus\n", [], "row 2: 1 field(s) more than the header's"),
    ("big-meta.csv", ("text,note\nok," + "n" * 4001 + "\n").encode(), [],
     "row 1: column 'note' holds 4001 characters; metadata values are at most 4000"),
]


@pytest.mark.parametrize(("name", "content", "options", "says"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
async def test_a_bad_file_is_refused_with_its_rows_and_ingests_nothing(  # type: ignore[no-untyped-def]
        env: Env, gateway, tmp_path: Path, name: str, content: bytes, options: list[str], says: str) -> None:
    runtime, _ = gateway
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = await run_cli(env, runtime.component.port, "ingest", str(path), "--project", PROJECT, *options,
                                   cwd=REPO)
    assert code == 2 and says in err, (out, err)
    assert await runtime.db["items"].count_documents({"project": PROJECT}) == 0


async def test_a_refusal_part_way_says_which_rows_went_in_and_a_rerun_completes(  # type: ignore[no-untyped-def]
        env: Env, start_gateway, tmp_path: Path) -> None:
    """A gateway set to take shorter texts than the CLI's check assumes (LABELMESH_GATEWAY_MAX_TEXT_CHARS) refuses
    the second batch: the first is in, and the report names the row and what went in before it."""
    runtime = await start_gateway(max_text_chars=40)
    admin = GatewayClient(f"127.0.0.1:{runtime.component.port}", ADMIN)
    await admin.configure_project(PROJECT, LABELS, guidelines="v1")
    await admin.close()
    long_row = INGEST_BATCH + 200
    rows = [f"r{n},{'a much longer text than this gateway takes ' * 2 if n == long_row else f'text {n}'}"
            for n in range(1, 2 * INGEST_BATCH + 101)]
    path = tmp_path / "items.csv"
    path.write_text("id,text\n" + "\n".join(rows) + "\n")
    port = runtime.component.port

    code, out, err = await run_cli(env, port, "ingest", str(path), "--project", PROJECT, "--id-column", "id", cwd=REPO)
    assert code == 1, (out, err)
    assert f"the gateway refused the batch of rows {INGEST_BATCH + 1}..{2 * INGEST_BATCH} (row {long_row})" in err, err
    assert "text is longer than 40 characters" in err, err
    assert f"went in before it: rows 1..{INGEST_BATCH} ({INGEST_BATCH} items); nothing after row {INGEST_BATCH}" in err
    assert await runtime.db["items"].count_documents({"project": PROJECT}) == INGEST_BATCH

    rows[long_row - 1] = f"r{long_row},short now"
    path.write_text("id,text\n" + "\n".join(rows) + "\n")
    code, out, err = await run_cli(env, port, "ingest", str(path), "--project", PROJECT, "--id-column", "id", cwd=REPO)
    assert code == 0 and f"ingested {len(rows)} items" in out, (out, err)
    assert await runtime.db["items"].count_documents({"project": PROJECT}) == len(rows)
