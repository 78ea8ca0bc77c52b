"""pytest-benchmark suites (not part of the default `pytest` run: testpaths = tests).

    pytest benchmarks --benchmark-only -p no:cacheprovider -o addopts=""

Add ``--benchmark-json=out.json`` to keep the numbers, ``-k csrc`` to pick cases.
They import the installed package (``pip install .``), as the tests do.
"""

from __future__ import annotations

import pytest
import torch


def have_csrc(device: str = "cpu") -> bool:
    try:
        from drdc_trt import _C
    except ImportError:
        return False
    if not hasattr(_C, "step"):
        return False
    return device != "cuda" or bool(dict(_C.build_info).get("cuda"))


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def device() -> str:
    """cuda when torch sees a GPU, else cpu."""
    return DEVICE


@pytest.fixture
def need_csrc(device):
    """Skip unless drdc_trt._C has the fused kernels for ``device``."""
    if not have_csrc(device):
        pytest.skip(f"drdc_trt._C has no fused kernels for {device} here")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
