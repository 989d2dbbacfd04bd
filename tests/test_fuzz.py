"""The fuzzing harness over the public API (issue 11): every registered function gets generated
arguments (:mod:`tests.fuzz_registry`), each case runs in a worker process (:mod:`tests.fuzz_harness`),
and only a result or a ValueError/TypeError is accepted; a tame case (finite, moderate inputs)
must also return finite floats. A crash (signal), hang, other exception or non-finite result is
reported with its reproducer.

The ordinary suite runs a few cases per entry (a fixed seed per entry); ``python -m
benchmarks.fuzz`` runs many thousands.
"""
from __future__ import annotations

import zlib

import pytest

from tests.fuzz_harness import WorkerPool, fuzz_entry
from tests.fuzz_registry import all_entries

CASES_PER_ENTRY = 4
ENTRIES = all_entries()


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(size=1)
    yield p
    p.close()


@pytest.mark.parametrize("label,entry", ENTRIES, ids=[label for label, _ in ENTRIES])
def test_fuzz_accepts_only_a_result_or_a_refusal(pool, label, entry):
    counts, findings = fuzz_entry(pool, label, entry, CASES_PER_ENTRY,
                                  seed=zlib.crc32(label.encode()))
    assert sum(counts.values()) > 0
    assert not findings, "\n".join(str(f) for f in findings)


def test_the_harness_catches_a_segfault_and_a_hang_and_carries_on():
    # The harness must see what it is for: a worker killed by a signal and one that does not
    # answer are reported, replaced, and the next case runs.
    p = WorkerPool(size=1, timeout=2)
    try:
        assert p.run("ctypes:string_at", (0,))[0] == "crash"
        assert p.run("time:sleep", (60,))[0] == "hang"     # 2 s, then 8 s in a fresh worker
        assert p.run("math:sqrt", (4.0,), tame=True) == ("ok", "")
        assert p.run("math:sqrt", (-1.0,))[0] == "refused"
        assert p.respawns == 3                             # the hang was tried twice
    finally:
        p.close()
