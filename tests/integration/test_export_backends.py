"""Backend selection and the compiled-PyTorch runner (its CPU fallback is exact; its GPU
modes are checked against eager where a CUDA device exists)."""

import warnings

import pytest
import torch

from drdc_trt.backends import BACKENDS, as_torch_runner, available_backends, make_runner
from drdc_trt.backends.onnxruntime_backend import resolve_providers
from drdc_trt.backends.torch_backend import TorchRunner
from drdc_trt.backends.torch_compiled import TorchCompiledRunner
from drdc_trt.config import preset
from drdc_trt.methods.drdc.model import DRDCModel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = DRDCModel(preset("tiny")).eval()
    with torch.no_grad():
        for p in m.unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def test_available_backends_here():
    have = available_backends()
    assert {"torch", "torch-compiled", "onnxruntime"} <= set(have) and set(have) <= set(BACKENDS)


def test_make_runner_says_what_each_backend_needs(model):
    with pytest.raises(ValueError, match=r"unknown backend 'trt'; choose one of"):
        make_runner("trt")
    with pytest.raises(ValueError, match=r"the torch-compiled backend runs a checkpoint's model"):
        make_runner("torch-compiled", bundle="somewhere")
    with pytest.raises(ValueError, match=r"the onnxruntime backend runs a bundle's engines"):
        make_runner("onnxruntime", model=model)
    r = make_runner("torch", model=model)
    assert isinstance(r, TorchRunner) and as_torch_runner(r) is r


def test_onnxruntime_provider_selection():
    assert resolve_providers(None)[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match=r"execution provider\(s\) \['NoSuchExecutionProvider'\] are not in this "
                                         r"onnxruntime build"):
        resolve_providers(["NoSuchExecutionProvider"])


def test_torch_compiled_on_cpu_falls_back_to_eager_and_says_so(model):
    with pytest.warns(RuntimeWarning, match=r"torch-compiled: device cpu is not a CUDA device; .* runs eager PyTorch"):
        r = make_runner("torch-compiled", model=model, device="cpu")
    assert isinstance(r, TorchCompiledRunner) and not r.compiled and "eager" in r.fallback_reason
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(4, 6, 32, 32, generator=g), torch.tensor([250.0, 250.0, 83.0, 83.0])
    img = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    eager = TorchRunner(model)
    assert torch.equal(r.unet(x, t), eager.unet(x, t))
    assert torch.equal(r.base(img), eager.base(img))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["graph", "compile", "compile+graph"])
def test_torch_compiled_on_gpu_agrees_with_eager(model, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback on a GPU
        r = TorchCompiledRunner(model, device="cuda", mode=mode)
    assert r.compiled and r.fallback_reason is None
    eager = TorchRunner(model, "cuda")
    g = torch.Generator().manual_seed(2)
    for n in (4, 12, 4):  # a new shape captures a new graph, a seen one replays
        x = torch.randn(n, 6, 32, 32, generator=g).cuda()
        t = torch.full((n,), 166.0, device="cuda")
        torch.testing.assert_close(r.unet(x, t), eager.unet(x, t), atol=1e-4, rtol=1e-4)
    img = (torch.rand(3, 3, 32, 32, generator=g) * 2 - 1).cuda()
    torch.testing.assert_close(r.base(img), eager.base(img), atol=1e-4, rtol=1e-4)
    if "graph" in mode:
        assert len(r._unet.graphs) == 2
