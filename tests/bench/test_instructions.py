"""The instruction counter's reading of callgrind's report (running valgrind takes a minute:
`python -m bench.instructions` does, by hand)."""

from __future__ import annotations

import pytest

from bench.instructions import collected_instructions

VALGRIND_LOG = """\
==4242== Callgrind, a call-graph generating cache profiler
==4242== For interactive control, run 'callgrind_control -h'.
==4242==
==4242== Events    : Ir
==4242== Collected : 489,057,211
==4242==
==4242== I   refs:      489,057,211
"""


def test_the_count_is_the_collected_instructions() -> None:
    assert collected_instructions(VALGRIND_LOG) == 489_057_211


def test_a_log_without_a_count_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="Collected"):
        collected_instructions("==4242== Callgrind, a call-graph generating cache profiler\n")
