"""The prelabeler's embedding schedule: longest texts first, pieces shared by worker threads."""

import asyncio
import contextlib
import threading
import time

import numpy as np
import pytest

from labelmesh.ml.encoder import EncodeResult
from services.prelabeler.concurrency import embed_pieces, longest_first


def fake_encode(texts: list[str]) -> EncodeResult:
    lengths = np.array([len(t) for t in texts], dtype=np.int32)
    return EncodeResult(np.tile(lengths[:, None], (1, 2)).astype(np.float32), lengths, lengths > 4)


def test_pieces_hold_every_row_once_longest_first_and_ties_in_arrival_order():
    texts = ["aa", "aaaa", "a", "aaaa", "aaa"]
    assert longest_first(texts, 2) == [[1, 3], [4, 0], [2]]
    assert longest_first([], 2) == []
    assert longest_first(texts, 0) == [[1], [3], [4], [0], [2]]  # a piece holds one row at least


def test_the_tail_of_a_batch_comes_in_smaller_pieces():
    texts = ["x" * (1000 - i) for i in range(1000)]
    pieces = longest_first(texts, 128, workers=2)
    sizes = [len(p) for p in pieces]
    assert sorted(i for p in pieces for i in p) == list(range(1000))
    assert sizes[:4] == [128] * 4 and sizes == sorted(sizes, reverse=True)
    assert sizes[-1] <= 16 and min(sizes) >= 1
    assert longest_first(texts[:100], 128, workers=2)[0] == list(range(25))  # a short batch: a quarter each


def collect(texts: list[str], pieces: list[list[int]], workers: int, encode=fake_encode):
    async def run():
        return [piece async for piece in embed_pieces(encode, texts, pieces, workers)]

    return asyncio.run(run())


def test_every_piece_comes_back_once_with_its_own_rows_results():
    texts = [f"t{'x' * (i % 7)}" for i in range(50)]
    pieces = longest_first(texts, 4)
    done = collect(texts, pieces, workers=3)
    assert sorted(map(sorted, (rows for rows, _ in done))) == sorted(map(sorted, pieces))
    for rows, result in done:
        assert result.n_tokens.tolist() == [len(texts[i]) for i in rows]


def test_the_workers_share_the_queue():
    seen: list[str] = []
    both = threading.Barrier(2, timeout=5)  # broken (and raised) unless two threads embed at the same time

    def encode(texts: list[str]) -> EncodeResult:
        seen.append(threading.current_thread().name)
        if len(seen) <= 2:
            both.wait()
        return fake_encode(texts)

    texts = ["a"] * 8
    assert len(collect(texts, longest_first(texts, 1), workers=2, encode=encode)) == 8
    assert len(set(seen)) == 2


def test_a_failing_piece_raises_in_the_caller_and_the_workers_stop():
    calls = []

    def encode(texts: list[str]) -> EncodeResult:
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return fake_encode(texts)

    texts = ["a"] * 10
    with pytest.raises(RuntimeError, match="out of memory"):
        collect(texts, longest_first(texts, 1), workers=1, encode=encode)
    assert len(calls) == 2  # the worker stopped instead of embedding the other eight


def test_leaving_early_waits_for_the_piece_in_hand_and_embeds_no_more():
    started = []
    in_hand, release = threading.Event(), threading.Event()

    def encode(texts: list[str]) -> EncodeResult:
        started.append(texts)
        if len(started) == 2:  # the piece in hand when the caller leaves
            in_hand.set()
            release.wait(5)
            time.sleep(0.05)
        return fake_encode(texts)

    async def run():
        texts = ["a"] * 10
        async with contextlib.aclosing(embed_pieces(encode, texts, longest_first(texts, 1), 1)) as embedded:
            async for _ in embedded:
                # Leave only once the worker holds the second piece: on a busy machine it may not have
                # taken it yet when the first comes back, and then there is no piece in hand to wait for.
                assert await asyncio.to_thread(in_hand.wait, 5)
                release.set()
                break
        at_close = len(started)
        await asyncio.sleep(0.05)
        return at_close, len(started)

    assert asyncio.run(run()) == (2, 2)


def test_piece_size_is_the_setting_or_the_encoders_micro_batch_at_least_the_minimum():
    from services.prelabeler.concurrency import MIN_PIECE, piece_size

    assert piece_size(64, 32) == 64
    assert piece_size(0, 32) == MIN_PIECE
    assert piece_size(0, 512) == 512
    assert piece_size(0, None) == 256
