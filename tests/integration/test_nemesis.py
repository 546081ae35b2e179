"""bench/nemesis.py on a short run: kill -9, SIGSTOP, wiped disks, partitions and slow
links strike a real 3-node cluster while clients write and read; no acknowledged write
may be lost and no read may be stale."""

from __future__ import annotations

import pytest

from bench.nemesis import FAULTS, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_short_nemesis_run_loses_nothing_and_reads_nothing_stale():
    lines: list[str] = []
    figures = run(45, seed=3, keys_per_partition=4, log=lines.append)
    report = "\n".join(lines)
    assert figures["fault_count"] >= 10, report
    assert set(figures["faults"]) <= set(FAULTS)
    assert figures["ok"] > 100, report
    assert not figures["timed_out"], report
    assert figures["violations"] == 0, report
    assert figures["lost"] == 0, report
