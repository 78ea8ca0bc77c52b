"""The runs ``drdc-bench --method`` offers, from the method registry (torch-free: the command
line's choices are built from it).

* each registered method alone (its name);
* ``both``: the first two registered methods that have bench rows, side by side;
* ``all``: every registered method that has bench rows, side by side.

A method's bench rows are its spec's ``bench_rows`` entry point (``drdc_trt/methods/<name>/bench.py``);
a method with a ``bench_suite`` entry point runs that suite when benched alone.
"""

from __future__ import annotations

from drdc_trt import methods as registry


def benched() -> tuple[str, ...]:
    """The registered methods with bench rows, in registry order."""
    return tuple(s.name for s in registry.specs() if s.has("bench_rows"))


def runs() -> dict[str, tuple[str, ...]]:
    """{--method value: the methods it runs, in order (the first is the one the others are compared with)}."""
    rows = benched()
    return {**{n: (n,) for n in registry.names()}, "both": rows[:2], "all": rows}


def stem(methods: tuple[str, ...] | list[str]) -> str:
    """The result file names' part for a run of ``methods`` (``a_vs_b_vs_c``)."""
    return "_vs_".join(methods)
