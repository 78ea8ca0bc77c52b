"""Reliability suite: shared hooks."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    """The count of bad inputs tried (tests/reliability/test_bad_inputs.py), in the run's summary."""
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
