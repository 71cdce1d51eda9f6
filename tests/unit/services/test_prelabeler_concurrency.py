"""The prelabeler's embedding plan: chunks at once and torch threads per chunk."""

from services.prelabeler.concurrency import EncodePlan, encode_plan


def test_on_cpu_by_default_each_cpu_embeds_its_own_chunk_on_one_thread():
    assert encode_plan("cpu", 2) == EncodePlan(workers=2, threads=1)
    assert encode_plan("cpu", 8) == EncodePlan(workers=8, threads=1)


def test_an_explicit_worker_count_shares_the_cpus():
    assert encode_plan("cpu", 8, workers=2) == EncodePlan(workers=2, threads=4)
    assert encode_plan("cpu", 2, workers=1) == EncodePlan(workers=1, threads=2)
    assert encode_plan("cpu", 2, workers=3) == EncodePlan(workers=3, threads=1)


def test_a_gpu_takes_one_chunk_at_a_time_unless_told_otherwise():
    assert encode_plan("cuda", 16) == EncodePlan(workers=1, threads=16)
    assert encode_plan("cuda:1", 16, workers=2).workers == 2


def test_no_cpu_count_still_gives_a_worker():
    assert encode_plan("cpu", 0) == EncodePlan(workers=1, threads=1)
