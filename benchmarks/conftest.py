"""pytest-benchmark suites (not part of the default `pytest` run: testpaths = tests).

    pytest benchmarks --benchmark-only -p no:cacheprovider -o addopts=""

Add ``--benchmark-json=out.json`` to keep the numbers, ``-k csrc`` to pick cases.
They import the installed package (``pip install .``), as the tests do.
"""

from __future__ import annotations

import pytest
import torch


def have_csrc(device: str = "cpu") -> bool:
    """Whether drdc_trt._C has the fused kernels for ``device``. On the CPU they are part of
    every build, so a missing ``_C`` or missing kernels raise instead of answering False."""
    from drdc_trt import _C  # a required part of the package: missing is a failure

    if device != "cuda":
        if not hasattr(_C, "step"):
            raise RuntimeError("drdc_trt._C was built without its CPU kernels (prepare/step/fuse)")
        return True
    return hasattr(_C, "step") and bool(dict(_C.build_info).get("cuda"))


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def device() -> str:
    """cuda when torch sees a GPU, else cpu."""
    return DEVICE


@pytest.fixture
def need_csrc(device):
    """The fused kernels of drdc_trt._C for ``device``: on the CPU a build without them fails;
    on CUDA a build without CUDA kernels (no CUDA compiler at build time) skips."""
    if not have_csrc(device):
        pytest.skip(f"drdc_trt._C was built without CUDA kernels ({device})")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
