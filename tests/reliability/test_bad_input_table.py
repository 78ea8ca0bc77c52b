"""The bad-input table as a whole: every module's rows together (bad_inputs.py: the contract).

The rows' modules are imported by name (conftest.py puts this folder on ``sys.path``); under
``--import-mode=importlib`` these are second copies of the modules pytest collects, read here
only for their ``CASES``. A new module of rows joins the tuple below.
"""

from __future__ import annotations

import test_bad_bundles
import test_bad_checkpoints
import test_bad_cli
import test_bad_datasets
import test_bad_images
import test_bad_operands

CASES = [c for module in (test_bad_images, test_bad_datasets, test_bad_checkpoints, test_bad_bundles,
                          test_bad_operands, test_bad_cli) for c in module.CASES]


def test_case_table():
    """The table: enough cases, unique names, every family the reliability suite names."""
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 40
    families = {n.split("-")[0] for n in names}
    assert families == {"image", "array", "bundle", "mask", "data", "checkpoint", "op", "cli", "runtime"}
