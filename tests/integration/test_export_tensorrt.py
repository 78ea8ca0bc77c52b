"""TensorRT 10: plan build from the bundle's ONNX, the runtime-API runner, plan refusal/rebuild.

Skipped where TensorRT or a CUDA GPU is absent (as on the CPU development
machines); written to run on a GPU machine with ``pip install tensorrt cuda-python``.

Tolerances (stated, GPU-dependent): fp32 plans may use TF32 tensor cores
(TensorRT's default on Ampere and newer), so network outputs must agree with
ONNX Runtime's float32 within 1e-3 + 1e-2·max|ref| and pipeline maps/scores
with PyTorch within the same; fp16 plans within 1e-2 + 5e-2·max|ref|.
"""

import json
import shutil

import numpy as np
import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="TensorRT (the `tensorrt` package) is not installed here")

from drdc_trt.backends import as_torch_runner, make_runner  # noqa: E402
from drdc_trt.backends.cuda_util import device_count, device_info  # noqa: E402
from drdc_trt.backends.tensorrt_backend import PlanMismatchError, TensorRTRunner  # noqa: E402
from drdc_trt.backends.torch_backend import TorchRunner  # noqa: E402
from drdc_trt.loading import load_checkpoint
from drdc_trt.export import export_bundle  # noqa: E402
from drdc_trt.export.bundle import MANIFEST, load_bundle  # noqa: E402
from drdc_trt.export.numerics import sample_images  # noqa: E402
from drdc_trt.methods.drdc.numerics import record_unet_inputs  # noqa: E402
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.methods.drdc.runtime import BundleDetector

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu,
              pytest.mark.skipif(device_count() == 0, reason="TensorRT needs a CUDA GPU; none is visible")]

TOL = {False: (1e-3, 1e-2), True: (1e-2, 5e-2)}  # fp16 → (atol, rtol of max|ref|)


def _close(ref, got, fp16, what):
    atol, rtol = TOL[fp16]
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    err = float(np.max(np.abs(ref - got)))
    assert err <= atol + rtol * float(np.max(np.abs(ref))), f"{what}: max abs error {err:.3g}"


@pytest.fixture(scope="module")
def model(tiny_checkpoint, perturb_unet):
    # perturbed: the trained tiny U-Net's ε̂ is ~0.05 everywhere, so a plan that ignored the
    # timestep would pass; test_export.py checks the perturbed one depends on t
    return perturb_unet(load_checkpoint(tiny_checkpoint))


@pytest.fixture(scope="module", params=[False, True], ids=["fp32", "fp16"])
def plan_bundle(request, model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trt")
    res = export_bundle(model, tmp / "bundle", fp16=request.param, tensorrt=True, max_batch=3,
                        timing_cache=tmp / "timing.cache", check_batches=(1,))
    return load_bundle(res.path), request.param, tmp / "timing.cache"


def test_manifest_records_tensorrt_version_and_compute_capability(plan_bundle):
    bundle, fp16, cache = plan_bundle
    sec = bundle.manifest["tensorrt"]
    dev = device_info(0)
    assert sec["version"] == trt.__version__ and sec["compute_capability"] == dev["compute_capability"]
    assert sec["fp16"] is fp16 and bundle.manifest["versions"]["tensorrt"] == trt.__version__
    for net in ("base", "unet"):
        meta = sec["plans"][net]
        assert bundle.has_file(meta["file"]) and bundle.file(meta["file"]).stat().st_size > 0
        assert meta["onnx_sha256"] == bundle.sha256(bundle.network(net)["onnx"])
    assert sec["plans"]["unet"]["profile"]["x"]["max"] == [12, 6, 32, 32]
    assert cache.is_file() and cache.stat().st_size > 0 and bundle.has_file(sec["timing_cache"])


@pytest.mark.parametrize("batch", [1, 3])
def test_tensorrt_networks_agree_with_onnxruntime(plan_bundle, model, batch):
    bundle, fp16, _ = plan_bundle
    runner, ort = TensorRTRunner(bundle), make_runner("onnxruntime", bundle=bundle)
    images = sample_images(32, batch, seed=9)
    _close(ort.base(images.numpy()), runner.base(images.numpy()), fp16, f"base batch {batch}")
    for x, t, _ in record_unet_inputs(model, images):
        _close(ort.unet(x.numpy(), t.numpy()), runner.unet(x.numpy(), t.numpy()), fp16, f"unet rows {x.shape[0]}")
    with pytest.raises(ValueError, match="outside the plan's optimisation profile"):
        runner.base(np.zeros((4, 3, 32, 32), np.float32))


def test_tensorrt_pipeline_agrees_with_torch(plan_bundle, model):
    bundle, fp16, _ = plan_bundle
    images = sample_images(32, 3, seed=5)
    ref = Detector(model.cfg, TorchRunner(model), model.stats).predict(images, batch_size=3)
    got = BundleDetector(bundle, backend="tensorrt").predict(images.numpy(), batch_size=3)
    for f in ("anomaly_map", "pred_score", "base_map", "diff_map"):
        _close(getattr(ref, f).numpy(), getattr(got, f), fp16, f)
    # device-pointer path: the PyTorch Detector on CUDA tensors
    det = Detector(model.cfg, as_torch_runner(TensorRTRunner(bundle), "cuda"), model.stats, "cuda")
    cuda = det.predict(images.cuda(), batch_size=3)
    _close(ref.anomaly_map.numpy(), cuda.anomaly_map.cpu().numpy(), fp16, "anomaly_map (device pointers)")


def test_plan_from_another_tensorrt_version_is_refused_then_rebuilt(plan_bundle, tmp_path, monkeypatch):
    bundle, fp16, _ = plan_bundle
    copy = shutil.copytree(bundle.path, tmp_path / "b")
    m = json.loads((copy / MANIFEST).read_text())
    m["tensorrt"]["plans"]["unet"]["tensorrt_version"] = "10.0.0-not-this-one"
    (copy / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(PlanMismatchError, match=r"unet plan refused: built with TensorRT 10\.0\.0-not-this-one, "
                                                r"this machine has TensorRT .*rebuild=True"):
        TensorRTRunner(load_bundle(copy))
    monkeypatch.setenv("DRDC_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="unet plan not usable"):
        runner = TensorRTRunner(load_bundle(copy), rebuild=True)
    assert "unet" in runner.rebuilt and list((tmp_path / "cache" / "tensorrt" / "plans").glob("unet-*.plan"))
    x = torch.randn(4, 6, 32, 32).numpy()
    t = np.full(4, 250.0, np.float32)
    _close(make_runner("onnxruntime", bundle=bundle).unet(x, t), runner.unet(x, t), fp16, "rebuilt unet")


def test_cpp_core_loads_the_plan(plan_bundle):
    from drdc_trt import _C

    if not dict(_C.build_info).get("tensorrt"):
        pytest.skip("drdc_trt._C was built without TensorRT")
    bundle, _, _ = plan_bundle
    eng = _C.TensorRTEngine(str(bundle.file(bundle.plan("unet")["file"])))
    assert sorted(t["name"] for t in eng.tensors) == ["eps", "timesteps", "x"]
