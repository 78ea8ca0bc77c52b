"""The TensorRT plan set of each method's bundle (export.tensorrt_build.build_plan_set), with
TensorRT and the GPU stood in for (neither is here): one plan per network with that network's
profile, the manifest section, and the timing cache copied into the bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from drdc_trt.methods.diffusionad import export as dad_export
from drdc_trt.methods.glad import export as glad_export
from drdc_trt.export import tensorrt_build as tb


@pytest.fixture
def fake_trt(monkeypatch, tmp_path):
    calls = []

    def build_plan(onnx_path, plan_path, profile, fp16, timing_cache, workspace, device):
        calls.append((Path(onnx_path).name, Path(plan_path).name, profile, fp16, Path(timing_cache), device))
        return {"file": Path(plan_path).name}

    import drdc_trt.backends.cuda_util as cu

    monkeypatch.setattr(tb, "import_tensorrt", lambda: type("TRT", (), {"__version__": "10.9"}))
    monkeypatch.setattr(tb, "build_plan", build_plan)
    monkeypatch.setattr(cu, "device_info", lambda device=0: {"compute_capability": "9.0", "name": "H200"})
    cache = tmp_path / "cache.bin"
    cache.write_bytes(b"timing")
    return calls, cache


@pytest.mark.parametrize("method", ["drdc", "diffusionad", "glad"])
def test_one_plan_per_network_with_its_profile(fake_trt, tmp_path, method):
    calls, cache = fake_trt
    out = tmp_path / "staging"
    out.mkdir()
    if method == "drdc":
        from drdc_trt.config import preset

        cfg = preset("tiny")
        config = cfg.to_dict()
        want = {"base": tb.base_profile(config, 4), "unet": tb.unet_profile(config, cfg.rows_per_image, 4)}
        section = tb.build_plans({"base": "base.onnx", "unet": "unet.onnx"}, out, config, cfg.rows_per_image, 4,
                                 True, cache)
    elif method == "diffusionad":
        want = dad_export.plan_profiles(64, 4)
        section = dad_export.build_diffusionad_plans({"unet": "unet.onnx", "seg": "seg.onnx"}, out, 64, 4, True, cache)
    else:
        want = glad_export.plan_profiles(64, 3, 4)
        section = glad_export.build_glad_plans({"unet": "unet.onnx", "features": "features.onnx"}, out, 64, 3, 4,
                                               True, cache)
    assert [c[0] for c in calls] == [f"{n}.onnx" for n in want] and [c[1] for c in calls] == [f"{n}.plan" for n in want]
    assert [c[2] for c in calls] == list(want.values()) and all(c[3] is True and c[4] == cache for c in calls)
    assert section == {"version": "10.9", "compute_capability": "9.0", "device_name": "H200", "fp16": True,
                       "max_batch": 4, "plans": {n: {"file": f"{n}.plan"} for n in want},
                       "timing_cache": "timing.cache"}
    assert (out / "timing.cache").read_bytes() == b"timing"


def test_glad_profiles_cover_compacted_rows_and_both_feature_passes():
    p = glad_export.plan_profiles(64, 3, 4)
    assert p["unet"]["x"] == ((1, 3, 64, 64), (4, 3, 64, 64), (4, 3, 64, 64))  # 1 row left .. the whole batch
    assert p["features"]["image"][2] == (8, 3, 64, 64)  # x0_in and x0_gen of every row in one pass


def test_bundle_plan_refuses_a_missing_plan_and_runs_one(monkeypatch, tmp_path):
    """backends.tensorrt_backend.BundlePlan, the reconstruction methods' TensorRT network, with
    TensorRT and the engine stood in for."""
    from drdc_trt.backends import tensorrt_backend as be

    class Engine:
        def __init__(self, data, where):
            self.data = data

        def max_batch(self):
            return 8

        def run_host(self, feeds):
            return {"a": feeds["x"] + 1, "b": feeds["x"] * 2}

    class Bundle:
        path = tmp_path

        def __init__(self, meta):
            self.meta = meta

        def plan(self, net):
            return self.meta

        def file(self, name):
            return tmp_path / name

    (tmp_path / "unet.plan").write_bytes(b"plan")
    monkeypatch.setattr(be, "import_tensorrt", lambda: type("TRT", (), {"__version__": "10.9"}))
    monkeypatch.setattr(be, "device_info", lambda device=0: {"compute_capability": "9.0", "name": "H200"})
    monkeypatch.setattr(be, "plan_mismatch", lambda meta, v, cc, name: None)
    monkeypatch.setattr(be, "TrtEngine", Engine)
    with pytest.raises(be.PlanMismatchError, match="unet plan refused: the bundle has no TensorRT plan"):
        be.BundlePlan(Bundle(None), "unet", ["x"], ["a"])
    one = be.BundlePlan(Bundle({"file": "unet.plan"}), "unet", ["x"], ["a"], rows_per_image=2)
    assert one.max_batch == 4 and one.engine.data == b"plan" and one.run(3) == 4
    both = be.BundlePlan(Bundle({"file": "unet.plan"}), "unet", ["x"], ["a", "b"], as_list=True)
    assert both.max_batch == 8 and both.run(3) == [4, 6]
