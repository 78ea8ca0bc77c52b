"""GPU-path behaviour that a CPU can check: results on a device reach numpy through
``.cpu()``, pointers handed to an engine are 256-byte aligned, the CUDA-graph runner's
autocast keeps no weight cache, the TensorRT major version is gated, and the compiled
core says why it sees no GPU."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from drdc_trt.methods.drdc.fusion import FusionStats
from drdc_trt.methods.drdc.pipeline import InferenceBatch


class OnDevice(torch.Tensor):
    """Stands in for a CUDA tensor on a CPU machine: ``.numpy()`` (and numpy conversion)
    refuse, as they do for CUDA tensors, until the tensor is moved with ``.cpu()``."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first.")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def _on_device(t: torch.Tensor) -> OnDevice:
    return t.clone().as_subclass(OnDevice)


def _batch(b: int, s: int) -> InferenceBatch:
    g = torch.Generator().manual_seed(0)
    final = torch.rand(b, s, s, generator=g)
    fields = dict(pred_score=final.amax(dim=(1, 2)), pred_label=torch.ones(b, dtype=torch.bool),
                  anomaly_map=final, pred_mask=final > 0.5, base_map=torch.rand(b, s, s, generator=g),
                  diff_map=torch.rand(b, s, s, generator=g), base_score=torch.rand(b, generator=g))
    return InferenceBatch(**{k: _on_device(v) for k, v in fields.items()})


def test_the_stand_in_refuses_numpy_like_a_cuda_tensor():
    t = _on_device(torch.ones(2))[0:1].detach()
    with pytest.raises(TypeError, match="cuda"):
        t.numpy()
    assert t.cpu().numpy().tolist() == [1.0]


def test_detect_saves_maps_of_device_results(tmp_path, monkeypatch):
    import drdc_trt.cli as cli

    s = 16
    for i in range(2):
        Image.fromarray(np.full((s, s, 3), 40 * i, np.uint8)).save(tmp_path / f"img{i}.png")
    res = _batch(2, s)
    want = res.anomaly_map.cpu().numpy()

    def predictor(*_args):
        return (lambda x, batch_size, progress: res), s, FusionStats(pixel_threshold=0.5, image_threshold=0.1)

    monkeypatch.setattr(cli, "detect_predictor", predictor)
    out = tmp_path / "det"
    r = CliRunner().invoke(cli.main, ["detect", "--model", "unused", str(tmp_path / "img0.png"),
                                      str(tmp_path / "img1.png"), "--out", str(out), "--device", "cuda"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    records = json.loads((out / "results.json").read_text())["results"]
    for i, rec in enumerate(records):
        np.testing.assert_array_equal(np.load(out / rec["anomaly_map"]), want[i])
        assert rec["pred_score"] == pytest.approx(float(want[i].max()))


def test_eval_example_rows_from_device_results():
    from drdc_trt.data import Loaded
    from drdc_trt.data.folder import Sample
    from drdc_trt.evaluate import EvalResult, example_rows

    b, s = 2, 16
    data = Loaded(torch.zeros(b, 3, s, s), torch.zeros(b, 1, s, s), torch.tensor([0, 1]),
                  [Sample(Path(f"x{i}.png"), "c", "good" if i == 0 else "crack", None) for i in range(b)])
    result = EvalResult(data, _batch(b, s), rows=[], seconds=0.0)
    rows, headers, caps = example_rows(result, FusionStats(), [0, 1])
    assert headers == ["input", "ground truth", "base map", "diffusion map", "final map"]
    assert len(rows) == 2 and all(len(r) == 5 and r[-1].shape == (s, s, 3) for r in rows)
    assert caps[1].startswith("x1.png score ")


# --------------------------------------------------------------------------- alignment
def test_aligned_copies_only_misaligned_tensors():
    from drdc_trt.backends.adapter import ALIGN, aligned

    table = torch.arange(3 * 20, dtype=torch.float32)
    row = table[20:40]  # 80 bytes in: a timestep row of N = 20 rows
    out = aligned(row)
    assert out.data_ptr() % ALIGN == 0 and torch.equal(out, row) and out.shape == row.shape
    again = aligned(out)
    assert again.data_ptr() == out.data_ptr()  # already aligned: no copy
    half = aligned(torch.ones(5, 6, dtype=torch.float16)[1:])
    assert half.data_ptr() % ALIGN == 0 and half.dtype == torch.float16 and half.shape == (4, 6)


# --------------------------------------------------------------------------- autocast, graphs
def test_graph_runner_autocast_keeps_no_weight_cache():
    from drdc_trt.backends.torch_backend import TorchRunner, amp_context
    from drdc_trt.backends.torch_compiled import TorchCompiledRunner

    runner = TorchCompiledRunner.__new__(TorchCompiledRunner)
    runner.precision = "bfloat16"
    ctx = runner._ctx()
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16 and ctx._cache_enabled is False
    eager = TorchRunner.__new__(TorchRunner)
    eager.precision = "bfloat16"
    assert eager._ctx()._cache_enabled is True  # eager AMP keeps the cache (no graph replays its reads)
    assert not isinstance(amp_context("float32", cache_enabled=False), torch.autocast)


# --------------------------------------------------------------------------- TensorRT version
@pytest.mark.parametrize("version,ok", [("10.13.0.35", True), ("11.0.0", False), ("9.2.0", False)])
def test_tensorrt_major_version_gate(monkeypatch, version, ok):
    from drdc_trt.export.tensorrt_build import TensorRTUnavailable, import_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
    if ok:
        assert import_tensorrt().__version__ == version
    else:
        with pytest.raises(TensorRTUnavailable, match=f"TensorRT {version} is installed.*TensorRT 10"):
            import_tensorrt()


# --------------------------------------------------------------------------- no GPU, and why
def test_compiled_core_says_why_it_sees_no_gpu():
    from drdc_trt import _C as C  # required: missing is a failure
    status = C.cuda_status()
    if C.cuda_device_count() > 0:
        assert status == ""
    elif C.build_info["cuda"]:
        # e.g. "cudaErrorInsufficientDriver: ..." where no driver is installed, "no CUDA device" where
        # the driver sees none: never an empty reason
        assert status.startswith("cudaError") or status == "no CUDA device", status
    else:
        assert "without CUDA" in status
