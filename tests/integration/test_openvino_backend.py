"""The OpenVINO backend against PyTorch: each network (perturbed U-Net weights, batches 1-3) in
f32 and bf16, the whole pipeline of the torch-free runtime against the PyTorch Detector, static
batches, and the refusals (absent device, unknown precision, a manifest that does not match
the graph)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from drdc_trt.backends import BACKENDS, ENGINE_BACKENDS, available_backends, make_runner
from drdc_trt.backends.openvino_backend import OpenVINORunner, available_devices, supports_bf16
from drdc_trt.backends.torch_backend import TorchRunner
from drdc_trt.loading import load_checkpoint
from drdc_trt.export.exporter import export_bundle
from drdc_trt.export.numerics import sample_images
from drdc_trt.float_bounds import decisions_agree
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.methods.drdc.runtime import RUNTIME_BACKENDS, BundleDetector

# f32: kernels that differ from PyTorch's only in summation order and fusion (measured ~1e-6).
F32_RTOL = 1e-5
# bf16: 8-bit mantissas inside the convolutions and matrix products (measured ~1e-2 on the U-Net).
BF16_RTOL = 5e-2
# whole pipeline, f32: as the ONNX Runtime path (docs/deploy.md)
PIPE_ATOL = PIPE_RTOL = 1e-4
# bf16 depends on the CPU: OpenVINO computes in it on CPUs with AVX-512 BF16 or AMX and refuses it
# by name elsewhere (an AVX2-only AMD EPYC here). The tests named "..._bf16_where_the_cpu_has_it"
# check the one or the other, never skip.
CPU_BF16 = supports_bf16("CPU")
BF16_REFUSED = "OpenVINO precision bf16: device CPU does not support it"


def test_bf16_is_offered_exactly_where_the_cpu_has_it():
    """supports_bf16 reads the CPU plugin's capabilities, and an engine asked for bf16 is built
    (computing in it) or refused by name accordingly."""
    import openvino as ov

    assert CPU_BF16 == ("BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if not CPU_BF16:
        from drdc_trt.backends.openvino_backend import resolve_precision

        with pytest.raises(ValueError, match=BF16_REFUSED):
            resolve_precision("bf16", "CPU")


@pytest.fixture(scope="module")
def model(tiny_checkpoint, perturb_unet):
    return perturb_unet(load_checkpoint(tiny_checkpoint).eval())


@pytest.fixture(scope="module")
def bundle_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ov_bundle") / "bundle"
    export_bundle(model, out, max_batch=4, check_batches=())
    return out


def _unet_inputs(n: int, size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    xt = torch.randn(n, 3, size, size, generator=g)
    cond = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    t = torch.tensor([249.0, 166.0, 83.0, 0.0] * n)[:n]  # a timestep of the tiny loop per row
    return torch.cat([xt, cond], 1), t


def _rel_err(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max() / np.abs(ref).max())


def test_openvino_is_an_engine_backend_and_installed():
    assert "openvino" in BACKENDS and "openvino" in ENGINE_BACKENDS and "openvino" in RUNTIME_BACKENDS
    assert "openvino" in available_backends()  # in the dev extra: a missing openvino is a failure
    assert "CPU" in available_devices()


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_networks_agree_with_pytorch_f32_and_bf16_where_the_cpu_has_it(model, bundle_dir, batch):
    ref = TorchRunner(model)
    f32 = make_runner("openvino", bundle=bundle_dir)
    assert isinstance(f32, OpenVINORunner) and (f32.device, f32.precision) == ("CPU", "f32")
    runners = [(f32, F32_RTOL)]
    if CPU_BF16:
        bf16 = make_runner("openvino", bundle=bundle_dir, precision="bf16")
        runners.append((bf16, BF16_RTOL))
    else:
        with pytest.raises(ValueError, match=BF16_REFUSED):
            make_runner("openvino", bundle=bundle_dir, precision="bf16")
    s, rows = model.cfg.image_size, f32.bundle.rows_per_image
    images = sample_images(s, batch, seed=batch)
    x, t = _unet_inputs(batch * rows, s, seed=10 + batch)
    with torch.no_grad():
        want = {"base": ref.base(images).numpy().astype(np.float64), "unet": ref.unet(x, t).numpy().astype(np.float64)}
    assert np.abs(want["unet"]).max() > 0.5  # perturbed weights: a real, non-trivial ε̂
    for runner, rtol in runners:
        got = {"base": runner.base(images.numpy()), "unet": runner.unet(x.numpy(), t.numpy())}
        for net in ("base", "unet"):
            assert got[net].shape == want[net].shape and got[net].dtype == np.float32
            err = _rel_err(want[net], got[net])
            assert err <= rtol, f"{runner.precision} {net} batch {batch}: max error {err:.3g} of max|torch|"
    if CPU_BF16:  # bf16 is really computed in bf16 (OpenVINO's CPU default would be too, f32 must not be)
        assert _rel_err(want["unet"], bf16.unet(x.numpy(), t.numpy())) > 1e-4


def test_pipeline_agrees_with_the_pytorch_detector(model, bundle_dir):
    images = sample_images(model.cfg.image_size, 3, seed=7)
    ref = Detector(model.cfg, TorchRunner(model), model.stats, seed=0).predict(images, batch_size=3)
    for batch_size in (1, 3):
        got = BundleDetector(bundle_dir, backend="openvino").predict(images.numpy(), batch_size=batch_size)
        for f in ("anomaly_map", "diff_map", "base_map", "pred_score"):
            r, g = getattr(ref, f).numpy().astype(np.float64), getattr(got, f).astype(np.float64)
            err = float(np.abs(r - g).max())
            assert err <= PIPE_ATOL + PIPE_RTOL * float(np.abs(r).max()), f"batch {batch_size}: {f} error {err:.3g}"
        tol = PIPE_ATOL + PIPE_RTOL * float(np.abs(ref.pred_score.numpy()).max())
        assert decisions_agree(got.pred_label, ref.pred_label, ref.pred_score, model.stats.image_threshold, tol)


def test_static_batch_runs_any_batch_in_chunks(bundle_dir):
    images = sample_images(32, 3, seed=8).numpy()
    dyn = BundleDetector(bundle_dir, backend="openvino", kernels="numpy")
    static = BundleDetector(bundle_dir, backend="openvino", kernels="numpy", static_batch=2)
    a, b = dyn.predict(images, batch_size=3), static.predict(images, batch_size=3)  # 3 = a chunk of 2 + 1 padded
    assert static.runner.label == "CPU, f32, static batch 2"
    assert _rel_err(a.anomaly_map.astype(np.float64), b.anomaly_map) <= F32_RTOL


def test_unavailable_device_and_precision_are_refused(bundle_dir):
    with pytest.raises(ValueError, match=r"OpenVINO device 'GPU\.9': GPU\.9 is not available on this machine "
                                         r"\(OpenVINO sees \[.*'CPU'.*\]\)"):
        BundleDetector(bundle_dir, backend="openvino", device="gpu.9")
    with pytest.raises(ValueError, match=r"OpenVINO device 'AUTO:NPU9,CPU': NPU9 is not available"):
        make_runner("openvino", bundle=bundle_dir, device="AUTO:NPU9,CPU")
    with pytest.raises(ValueError, match=r"OpenVINO precision 'int4': choose one of \['f32', 'bf16', 'int8'\]"):
        make_runner("openvino", bundle=bundle_dir, precision="int4")
    with pytest.raises(ValueError, match=r"holds no int8 networks; write them with `drdc export --int8"):
        make_runner("openvino", bundle=bundle_dir, precision="int8")
    with pytest.raises(ValueError, match=r"static_batch must be >= 1, got 0"):
        make_runner("openvino", bundle=bundle_dir, static_batch=0)


def test_manifest_that_does_not_match_the_graph_is_refused(bundle_dir, tmp_path):
    for field, value, message in (
            ("name", "x_in", r"unet\.onnx: graph has inputs \['x', 'timesteps'\] and outputs \['eps'\]; manifest\.json "
                             r"says inputs \['x_in', 'timesteps'\]"),
            ("shape", ["batch", 6, 32, 33], r"unet\.onnx: tensor 'x' has shape \[\?,6,32,32\] in the graph, "
                                            r"manifest\.json says batch×6×32×33")):
        bad = tmp_path / field
        shutil.copytree(bundle_dir, bad)
        m = json.loads((bad / "manifest.json").read_text())
        m["networks"]["unet"]["inputs"][0][field] = value
        (bad / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(ValueError, match=message):
            make_runner("openvino", bundle=bad)


def test_bench_has_a_row_per_openvino_precision_against_eager_bf16_where_the_cpu_has_it(bundle_dir):
    from drdc_trt.bench import options
    from drdc_trt.methods.drdc.bench_suite import run

    opts = options(["--bundle", str(bundle_dir), "--device", "cpu", "--backends", "torch,onnxruntime,openvino",
                    "--loop", "runtime", "--batch", "2", "--warmup-s", "0", "--min-iters", "1",
                    "--max-seconds", "0", "--no-write"])
    rep = run(opts, log=lambda *_: None)
    rows = {(r["backend"], r["loop"], r["precision"]): r for r in rep["rows"]}
    base = rows[("torch", "torch", "float32")]
    assert base["baseline"] and base["status"] == "ok"
    r = rows[("openvino", "runtime", "bfloat16")]
    if not CPU_BF16:  # the row says why, and the others run
        assert r["status"].startswith("not available: " + BF16_REFUSED), r["status"]
    for prec, hint in (("float32", "f32"), ("bfloat16", "bf16"))[:2 if CPU_BF16 else 1]:
        r = rows[("openvino", "runtime", prec)]
        assert r["status"] == "ok", r["status"]
        assert re.fullmatch(rf"openvino \(CPU, {hint}(, \d+ streams)?\) \(torch-free runtime\)", r["engine"]), r["engine"]
        assert r["stages"]["unet_calls"] == 3  # the tiny loop's three steps went through OpenVINO
        assert r["speedup_vs_baseline"] == pytest.approx(base["latency_ms"]["p50_ms"] / r["latency_ms"]["p50_ms"])
    assert rows[("onnxruntime", "runtime", "float32")]["status"] == "ok"
    assert rows[("openvino", "runtime", "int8")]["status"] == (
        "not available: the bundle has no int8 networks (write them with `drdc export --int8 --calib DATA`)")
    peaks = rep["limits"]["gemm_peaks"]  # OpenVINO's int8 matmul is measured beside the fp32 GEMM
    assert peaks["int8"]["tflops"] > 0 and "OpenVINO" in peaks["int8"]["dtype"]
    assert ("bfloat16" in peaks) == CPU_BF16


def test_detect_cli_runs_openvino_with_its_options_bf16_where_the_cpu_has_it(bundle_dir, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from drdc_trt.cli import main
    from drdc_trt.data import load_image

    rng = np.random.default_rng(5)
    files = []
    for i in range(2):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(files[-1])
    x = np.stack([load_image(f, 32).numpy() for f in files])
    for precision in ("f32", "bf16"):
        out = tmp_path / f"det_{precision}"
        r = CliRunner().invoke(main, ["detect", "--bundle", str(bundle_dir), "--backend", "openvino", "--precision",
                                      precision, "--out", str(out), *map(str, files)])
        if precision == "bf16" and not CPU_BF16:  # refused in one line, exit 2
            assert r.exit_code == 2 and f"error: {BF16_REFUSED}" in r.output, r.output
            continue
        assert r.exit_code == 0, r.output + repr(r.exception)
        want = BundleDetector(bundle_dir, backend="openvino", precision=precision).predict(x)
        records = json.loads((out / "results.json").read_text())["results"]
        assert [rec["pred_score"] for rec in records] == pytest.approx(want.pred_score.tolist(), rel=1e-6)
        for i, rec in enumerate(records):
            np.testing.assert_allclose(np.load(out / rec["anomaly_map"]), want.anomaly_map[i], rtol=1e-6, atol=1e-6)
    r = CliRunner().invoke(main, ["detect", "--bundle", str(bundle_dir), "--backend", "openvino", "--device", "gpu.9",
                                  "--out", str(tmp_path / "bad"), str(files[0])])
    assert r.exit_code == 2 and "error: OpenVINO device 'GPU.9': GPU.9 is not available" in r.output
    r = CliRunner().invoke(main, ["detect", "--bundle", str(bundle_dir), "--precision", "bf16",
                                  "--out", str(tmp_path / "bad"), str(files[0])])
    assert r.exit_code == 2 and "--precision bf16 is an OpenVINO option" in r.output


def test_streams_split_rows_and_keep_the_f32_contract(bundle_dir):
    """A call of several rows runs split over CPU streams (uneven chunks: 5 rows on 2 streams) and gives
    the latency request's output within the f32 bound; one row takes the latency request."""
    from drdc_trt.backends.openvino_backend import OvNetwork
    from drdc_trt.export.bundle import load_bundle

    b = load_bundle(bundle_dir)
    args = (b.onnx_path("unet"), b.inputs("unet"), b.outputs("unet")[0], "CPU", "f32")
    lat, tp = OvNetwork(*args, streams=0), OvNetwork(*args, streams=2)
    assert lat.streams == 1 and tp.streams == 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, b.image_size, b.image_size)).astype(np.float32)
    t = np.linspace(10, 900, 5).astype(np.float32)

    class Spy:  # records the rows each stream is given, then runs them
        def __init__(self, req):
            self.req, self.rows = req, []

        def start_async(self, inputs):
            self.rows.append(len(inputs["x"]))
            self.req.start_async(inputs)

        def wait(self):
            self.req.wait()

        def get_tensor(self, name):
            return self.req.get_tensor(name)

    tp._stream_requests = spies = [Spy(r) for r in tp._stream_requests]
    want = lat.run(x, t)
    got = tp.run(x, t)
    assert got.shape == want.shape == (5, 3, b.image_size, b.image_size)
    assert float(np.abs(got - want).max()) <= F32_RTOL * float(np.abs(want).max())
    assert not np.allclose(want[0], want[1])  # rows differ: a split that mixed them up would show
    assert sorted(sp.rows[0] for sp in spies) == [2, 3]
    one = tp.run(x[:1], t[:1])
    assert [len(sp.rows) for sp in spies] == [1, 1]  # the one-row call took the latency request
    assert float(np.abs(one - want[:1]).max()) <= F32_RTOL * float(np.abs(want).max())
    runner = OpenVINORunner(b, streams=0)
    assert runner.label == "CPU, f32" and "2 streams" in OpenVINORunner(b, streams=2).label
