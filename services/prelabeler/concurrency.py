"""How the prelabeler spreads embedding over the machine: pieces embedded at once, torch threads per piece,
and which piece goes next."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from labelmesh.ml.encoder import EncodeResult


@dataclass(frozen=True)
class EncodePlan:
    workers: int  # chunks embedded at the same time
    threads: int  # torch intra-op threads (CPU only)


def encode_plan(device: str, cpus: int, workers: int = 0) -> EncodePlan:
    """workers=0 picks: one chunk per CPU with one thread each on CPU, one chunk at a time on a GPU (its own
    parallelism serves one forward pass; a second would only queue behind it). An explicit workers count
    shares the CPUs among them."""
    cpus = max(1, cpus)
    if device.startswith("cuda"):
        return EncodePlan(workers=max(1, workers or 1), threads=cpus)
    chosen = max(1, workers or cpus)
    return EncodePlan(workers=chosen, threads=max(1, cpus // chosen))


# Texts per piece by default, at least. Timed in one process on 2 CPUs (MiniLM, 2,000 BANKING77 texts in
# batches of 1,024, two single-threaded workers, medians of 3 rounds, 2026-12-03): pieces of 32 259, 64 248,
# 128 283 texts/s (314 in the round with least steal); one call of 1,024 on two threads 290. A piece is
# embedded in the encoder's own micro-batches, so a bigger one costs only a longer tail.
MIN_PIECE = 128
MIN_TAIL_PIECE = 16  # the smallest piece the tail of a batch is cut into


def piece_size(setting: int, encoder_batch: int | None) -> int:
    """The piece size: the setting when given, else the encoder's micro-batch but at least MIN_PIECE
    (an encoder without one, the hashing stub, gets 256)."""
    return setting if setting > 0 else max(MIN_PIECE, encoder_batch or 256)


def longest_first(texts: Sequence[str], piece: int, workers: int = 1) -> list[list[int]]:
    """Row indices cut into pieces of up to `piece`, longest texts first, smaller pieces at the end.

    Workers that take pieces from one shared queue in this order finish together: whatever a worker is
    still embedding when the queue runs dry is one of the shortest pieces (longest-processing-time-first
    scheduling), and once fewer than 2 x workers full pieces are left, each piece is half of the rest's
    fair share (guided self-scheduling), so the last ones are small. It also puts texts of similar length
    side by side, so a piece pads little. Characters stand in for tokens here: they sort the same way
    closely enough, and cost nothing to count.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # sorted() is stable: ties keep arrival order
    step, share = max(1, piece), 2 * max(1, workers)
    pieces, start = [], 0
    while start < len(order):
        left = len(order) - start
        size = step if left >= share * step else min(step, max(MIN_TAIL_PIECE, -(-left // share)))
        pieces.append(order[start:start + size])
        start += size
    return pieces


async def embed_pieces(
    encode: Callable[[list[str]], EncodeResult], texts: Sequence[str], pieces: list[list[int]], workers: int
) -> AsyncIterator[tuple[list[int], EncodeResult]]:
    """Embed the pieces on `workers` threads that share one queue; yields (rows, result) as each is done.

    A fixed split of a batch among the workers left one CPU idle for ~0.75 s of every ~5 s batch of 1,024
    (MiniLM, two workers, 2026-12-03 trace): equal counts of texts are not equal work. Threads, not
    processes: torch releases the GIL in the forward pass. Close the generator (contextlib.aclosing) when
    leaving early: the workers stop after the piece they are on, and it waits for them.
    """
    loop = asyncio.get_running_loop()
    queue = deque(pieces)  # popleft is atomic, so the threads share it without a lock
    done: asyncio.Queue[tuple[list[int], EncodeResult | BaseException]] = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                rows = queue.popleft()
            except IndexError:
                return
            try:
                result: EncodeResult | BaseException = encode([texts[i] for i in rows])
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side, which raises it
                loop.call_soon_threadsafe(done.put_nowait, (rows, exc))
                return
            loop.call_soon_threadsafe(done.put_nowait, (rows, result))

    running = [asyncio.create_task(asyncio.to_thread(work)) for _ in range(max(1, min(workers, len(pieces))))]
    try:
        for _ in pieces:
            rows, result = await done.get()
            if isinstance(result, BaseException):
                raise result
            yield rows, result
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
