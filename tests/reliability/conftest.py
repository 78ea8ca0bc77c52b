"""Reliability suite: shared hooks.

Tests are not a package and run under ``--import-mode=importlib``, which leaves ``sys.path``
alone; this folder goes on it here (conftest.py is loaded before the test modules beside it)
so the bad-input modules (test_bad_*.py) can import what they share from bad_inputs.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_terminal_summary(terminalreporter):
    """The count of bad inputs tried (the table in tests/reliability/test_bad_*.py), in the run's summary."""
    tried, refused = set(), set()
    for outcome in ("passed", "failed", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            node = getattr(rep, "nodeid", "")
            if "test_bad_input_is_refused_clearly[" in node and (rep.when == "call" or outcome == "error"):
                tried.add(node)
                if outcome == "passed":
                    refused.add(node)
    if tried:
        terminalreporter.write_sep("-", "bad inputs")
        terminalreporter.write_line(f"bad-input cases: {len(tried)} tried, {len(refused)} refused with a clear error")
