"""GLAD export and the torch-free runtime: `drdc export` of a GLAD checkpoint, the manifest's
fields, ONNX Runtime vs PyTorch with perturbed U-Net weights, the runtime's adaptive loop (ONNX
Runtime and OpenVINO; numpy and compiled step kernels; compaction on and off) against the PyTorch
GLADDetector, the command lines, and manifests missing a field refused by name."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from drdc_trt.loading import load_checkpoint
from drdc_trt.checkpoint import save_checkpoint
from drdc_trt.cli import main
from drdc_trt.config import preset
from drdc_trt.export.bundle import BundleError, load_bundle
from drdc_trt.methods.glad.export import compare_glad, plan_profiles
from drdc_trt.export.numerics import NumericsError, sample_images
from drdc_trt.export.onnx_export import check_onnx, tensorrt_problems
from drdc_trt.float_bounds import decisions_agree
from drdc_trt.methods.glad.detector import GLADDetector
from drdc_trt.methods.glad.model import GLADModel, GLADStats
from drdc_trt.methods.glad.adaptive import FALLBACK, TRIGGERED, adaptive_loop, trigger_score
from drdc_trt.methods.drdc.runtime import BundleDetector
from drdc_trt.methods.diffusionad.runtime import DiffusionADBundleDetector
from drdc_trt.methods.glad.runtime import GLADBundleDetector
from drdc_trt.runtime import load_detector

# float32 engines that differ from PyTorch in summation order only (measured: ~4e-6 on the map,
# ~3e-5 on reconstructions that went through the loop's 4–5 steps)
ATOL, RTOL = 1e-4, 1e-4
SEED = 2
MIN_MARGIN = 1e-3  # |score − τ| at every step a row checks: far above the engines' ~1e-6 differences


@pytest.fixture(scope="module")
def one_thread():
    """PyTorch on one thread while the reference runs (its batch-size rounding; test_glad.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def step_scores(model: GLADModel, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Steps × B: each row's trigger score at every step it checks with τ = +inf (no row triggers,
    all fall back at the same step). A row's scores under any τ are a prefix of these: its path is
    the same until it triggers."""
    det = GLADDetector(model, "cpu", seed, tau=math.inf, compact=False)
    g, scores = model.cfg.glad, []

    def dist(x0_in, x0_gen):
        A = model.trigger_distance(x0_in, x0_gen)
        scores.append(trigger_score(A, g.trigger_top_k))
        return A

    with torch.no_grad():
        adaptive_loop(x, det.noise.expand_as(x).contiguous(), det.timesteps, model.alphas_cumprod, model.eps, dist,
                      math.inf, g.min_step, g.trigger_top_k, compact=False)
    return torch.stack(scores)


def tau_with_margin(scores: torch.Tensor) -> tuple[float, float]:
    """(τ, margin): τ between two images' largest scores (some rows trigger, some fall back),
    chosen as far as possible from every score a row checks."""
    maxima = scores.amax(0).sort().values.double()
    best = None
    for lo, hi in zip(maxima[:-1], maxima[1:]):
        tau = float((lo + hi) / 2)
        margin = float((scores.double() - tau).abs().min())
        if best is None or margin > best[1]:
            best = (tau, margin)
    return best


def widest_gap(values: np.ndarray) -> float:
    v = np.sort(values.ravel())
    i = int(np.argmax(np.diff(v)))
    return float(v[i:i + 2].mean())


def _write_pngs(images: torch.Tensor, folder: Path) -> list[Path]:
    from drdc_trt.viz import png_bytes

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, img in enumerate(images):
        files.append(folder / f"{i}.png")
        files[-1].write_bytes(png_bytes(((img.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()))
    return files


@pytest.fixture(scope="module")
def glad_case(synthetic_root, tmp_path_factory, perturb_unet, one_thread):
    """A trained tiny GLAD checkpoint, its U-Net perturbed (a 4-iteration U-Net predicts ε ≈ 0),
    τ and the thresholds chosen off every knife edge; exported by `drdc export`; the PyTorch result
    on six images read from PNG files."""
    from drdc_trt.data import load_image
    from drdc_trt.methods.glad.train import train

    root = tmp_path_factory.mktemp("glad_export")
    train(synthetic_root, root / "trained", preset("tiny", "glad"), progress=False, log=lambda *_: None)
    model = perturb_unet(load_checkpoint(root / "trained"))
    files = _write_pngs(sample_images(model.cfg.image_size, 6, seed=1), root / "images")
    images = torch.stack([load_image(f, model.cfg.image_size) for f in files])
    scores = step_scores(model, images, SEED)
    tau, margin = tau_with_margin(scores)
    assert margin > MIN_MARGIN, (scores, tau)
    model.stats = GLADStats(tau=tau, num_images=6, detector_seed=SEED)
    ref = GLADDetector(model, "cpu", SEED).predict(images)
    model.stats.image_threshold = widest_gap(ref.pred_score.numpy())
    maps = np.sort(ref.anomaly_map.numpy().ravel())
    model.stats.pixel_threshold = widest_gap(maps[len(maps) // 4: 3 * len(maps) // 4])
    ref = GLADDetector(model, "cpu", SEED).predict(images)
    assert {TRIGGERED, FALLBACK} <= set(ref.trigger_kind.tolist()), ref.trigger_kind  # both kinds of rows
    assert 0 < int(ref.pred_label.sum()) < len(images)
    ckpt = root / "ckpt"
    save_checkpoint(model, ckpt)
    bundle = root / "bundle"
    res = CliRunner().invoke(main, ["export", "--model", str(ckpt), "--out", str(bundle), "--seed", str(SEED),
                                    "--check-batches", "1,3"])
    assert res.exit_code == 0, res.output
    return SimpleNamespace(model=model, ckpt=ckpt, bundle=bundle, images=images, files=files, ref=ref, tau=tau,
                           scores=scores)


def test_manifest_holds_the_loop_and_map_settings(glad_case):
    c = glad_case
    b = load_bundle(c.bundle)
    m = b.manifest
    assert b.method == "glad" and m["method"] == "glad"
    g = m["glad"]
    assert (g["t0"], g["num_steps"], g["timesteps"], g["min_step"]) == (650, 5, [650, 520, 390, 260, 130], 350)
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)).astype(np.float32)  # the linear schedule, independently
    assert g["alpha_bar"] == [float(ab[t]) for t in g["timesteps"]]
    assert (g["trigger_top_k"], g["trigger_stage"], g["map_stages"], g["feature_stages"]) == (10, 2, [1, 2], [1, 2])
    assert g["blur_sigma"] == pytest.approx(6 * 32 / 256) and g["top_k"] == 4  # σ 6 and k 250 at 256², scaled
    assert g["clip"] is True and g["conditioned"] is False and g["saff_weight"] == "sigmoid"
    assert g["fallback"] == "continue"
    assert m["thresholds"] == {"image_threshold": c.model.stats.image_threshold, "tau": c.tau,
                               "pixel_threshold": c.model.stats.pixel_threshold, "num_images": 6,
                               "detector_seed": SEED}
    assert m["noise_seed"] == SEED and m["outputs"][:4] == ["pred_score", "pred_label", "anomaly_map", "pred_mask"]
    assert "steps" in m["outputs"]
    eps = np.load(b.file(m["noise"]["eps"]["file"]), allow_pickle=False)
    want = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(SEED))
    assert np.array_equal(eps, want.numpy())  # the detector's ε for the seed, drawn independently here
    assert [tuple(t.shape) for t in b.inputs("unet")] == [("batch", 3, 32, 32), ("batch",)]
    assert [tuple(t.shape) for t in b.outputs("unet")] == [("batch", 3, 32, 32)]
    assert [tuple(t.shape) for t in b.inputs("features")] == [("batch", 3, 32, 32)]
    assert [(t.name, tuple(t.shape)) for t in b.outputs("features")] == [("stage1", ("batch", 24, 8, 8)),
                                                                         ("stage2", ("batch", 40, 4, 4))]
    assert m["numerics"]["ok"]
    assert {x["network"] for x in m["numerics"]["comparisons"]} == {"unet", "features.stage1", "features.stage2"}
    assert {x["batch"] for x in m["numerics"]["comparisons"]} == {1, 3}
    assert m["source"]["checkpoint"] == str(Path(c.ckpt).absolute()) and m["tensorrt"] is None
    import onnx

    for net in ("unet", "features"):
        assert tensorrt_problems(onnx.load(str(b.onnx_path(net)))) == []
        check_onnx(b.onnx_path(net), b.network(net)["inputs"], b.network(net)["outputs"])


def test_onnx_matches_pytorch_with_perturbed_weights(glad_case, perturb_unet):
    c = glad_case
    b = load_bundle(c.bundle)
    rep = compare_glad(c.model, b.onnx_path("unet"), b.onnx_path("features"), (1, 3), c.images, seed=SEED)
    assert rep.ok and len(rep.comparisons) == 6
    for x in rep.comparisons:
        assert x.ref_max > 0.05 and x.max_abs < 1e-4, x  # real activations, float32 agreement
    # the check can fail: the U-Net graph of other weights is refused
    other = perturb_unet(load_checkpoint(c.ckpt), seed=11)
    with pytest.raises(NumericsError, match="unet batch"):
        compare_glad(other, b.onnx_path("unet"), b.onnx_path("features"), (1,), c.images, seed=SEED)


def _agree(got, ref, bundle):
    np.testing.assert_allclose(got.anomaly_map, ref.anomaly_map.numpy(), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got.reconstruction, ref.reconstruction.numpy(), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got.pred_score, ref.pred_score.numpy(), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got.max_score, ref.max_score.numpy(), atol=ATOL, rtol=RTOL)
    for f in ("steps", "trigger_kind", "trigger_step"):  # τ is placed away from every score
        assert np.array_equal(getattr(got, f), getattr(ref, f).numpy()), f
    # labels and masks: equal except at a value within the map tolerance of its threshold
    th = (bundle if hasattr(bundle, "manifest") else load_bundle(bundle)).manifest["thresholds"]
    image_th, pixel_th = (np.inf if th[k] is None else th[k] for k in ("image_threshold", "pixel_threshold"))
    tol = ATOL + RTOL * float(np.abs(ref.anomaly_map.numpy()).max())
    assert decisions_agree(got.pred_label, ref.pred_label, ref.pred_score, image_th, tol)
    assert decisions_agree(got.pred_mask, ref.pred_mask, ref.anomaly_map, pixel_th, tol)


@pytest.mark.parametrize("backend,kernels", [("onnxruntime", "numpy"), ("onnxruntime", "csrc"),
                                             ("openvino", "auto")])
def test_runtime_matches_the_pytorch_detector(glad_case, backend, kernels):
    c = glad_case
    det = load_detector(c.bundle, backend=backend, kernels=kernels)
    assert isinstance(det, GLADBundleDetector)
    assert det.kernels.name == ("numpy" if kernels == "numpy" else "csrc")
    got = det.predict(c.images.numpy(), batch_size=4)  # batches of 4 and 2: results do not depend on the batch
    _agree(got, c.ref, c.bundle)
    assert got.pred_mask.any() and not got.pred_mask.all()


def test_labels_and_masks_follow_the_thresholds(glad_case):
    det = GLADBundleDetector(glad_case.bundle, kernels="numpy")
    x = glad_case.images.numpy()
    scores = det.predict(x).pred_score
    det.image_threshold, det.pixel_threshold = float(np.sort(scores)[1]), math.inf  # the two lowest are normal
    got = det.predict(x)
    assert got.pred_label.sum() == 4 and np.array_equal(got.pred_label, got.pred_score > det.image_threshold)
    assert not got.pred_mask.any()
    det.pixel_threshold = float(np.median(got.anomaly_map))
    assert got.anomaly_map.size // 2 - 1 <= det.predict(x).pred_mask.sum() <= got.anomaly_map.size // 2


class _Counting:
    """The runner's networks, counting the rows each one runs."""

    def __init__(self, runner):
        self.runner, self.unet_rows, self.feature_rows = runner, [], []
        self.max_batch = runner.max_batch

    def unet(self, x, t):
        self.unet_rows.append(x.shape[0])
        return self.runner.unet(x, t)

    def features(self, x):
        self.feature_rows.append(x.shape[0])
        return self.runner.features(x)


def test_compaction_runs_fewer_rows_with_the_same_results(glad_case):
    c = glad_case
    x = c.images.numpy()
    out, counts = {}, {}
    for compact in (True, False):
        det = GLADBundleDetector(c.bundle, kernels="numpy", compact=compact)
        assert det.fallback == "continue"  # the manifest's rule: the authors'
        det.runner = counting = _Counting(det.runner)
        out[compact], counts[compact] = det.predict(x, batch_size=6), counting
    _agree(out[True], c.ref, c.bundle)
    _agree(out[False], c.ref, c.bundle)
    steps, kind = out[True].steps, out[True].trigger_kind
    # every row runs all 5 steps (a fallen-back row goes on); compaction saves the features network's
    # rows: x0_in and x0_gen of the rows still checking, then input and reconstruction of every image
    assert counts[True].unet_rows == [6] * 5 and int(steps.sum()) == 30
    assert set(kind.tolist()) == {TRIGGERED, FALLBACK}  # every row decides at its trigger_step: it checks until then
    checking = [int((out[True].trigger_step >= k).sum()) for k in range(int(steps.max()))]
    assert counts[True].feature_rows == [2 * n for n in checking if n] + [12]
    assert sum(counts[True].feature_rows) < sum(counts[False].feature_rows)
    # fixed shapes: every row at every step the loop runs
    assert counts[False].unet_rows == [6] * int(steps.max())
    assert out[True].step_report(5) == c.ref.step_report(5)


def test_fallback_stop_in_the_runtime_equals_pytorch_and_skips_unet_rows(glad_case):
    """glad.fallback = "stop" (a bundle written before the field, or the option): rows that fall back
    end there in the runtime as in PyTorch, and leave the U-Net batch."""
    from drdc_trt.study import carrying_config

    c = glad_case
    model = c.model
    with carrying_config(model, model.cfg.replace(**{"glad.fallback": "stop"})):
        ref = GLADDetector(model, "cpu", SEED).predict(c.images)
    det = GLADBundleDetector(c.bundle, kernels="numpy", compact=True)
    det.fallback = "stop"
    det.runner = counting = _Counting(det.runner)
    got = det.predict(c.images.numpy(), batch_size=6)
    _agree(got, ref, c.bundle)
    steps = got.steps
    assert counts_ok(counting.unet_rows, steps) and int(steps.sum()) < 6 * 5
    rep = got.step_report(5)
    assert rep == ref.step_report(5) and rep["unet_rows_saved"] == 30 - int(steps.sum()) > 0
    assert not np.allclose(got.reconstruction, c.ref.reconstruction.numpy(), atol=1e-3)  # the rules differ


def counts_ok(unet_rows, steps) -> bool:
    """compact: the U-Net runs the active rows, one per step taken."""
    return unet_rows == [int((steps > k).sum()) for k in range(int(steps.max()))]


def test_runtime_command_line(glad_case, tmp_path):
    from drdc_trt.runtime.__main__ import main as runtime_main

    c = glad_case
    np.save(tmp_path / "x.npy", c.images.numpy())
    assert runtime_main([str(c.bundle), str(tmp_path / "x.npy"), "--out", str(tmp_path / "r.npz"),
                         "--kernels", "numpy", "--batch-size", "3", "--backend", "onnxruntime"]) == 0
    with np.load(tmp_path / "r.npz", allow_pickle=False) as r:
        assert {"pred_score", "anomaly_map", "reconstruction", "steps", "trigger_kind"} <= set(r.files)
        np.testing.assert_allclose(r["anomaly_map"], c.ref.anomaly_map.numpy(), atol=ATOL, rtol=RTOL)
        assert np.array_equal(r["steps"], c.ref.steps.numpy())


def test_detect_with_the_bundle_matches_the_checkpoint(glad_case, tmp_path):
    c = glad_case
    runner = CliRunner()
    for args, out in ((["--bundle", str(c.bundle), "--backend", "onnxruntime"], "b"), (["--model", str(c.ckpt)], "m")):
        res = runner.invoke(main, ["detect", *args, "--seed", str(SEED), "--method", "glad", "--out",
                                   str(tmp_path / out), *map(str, c.files)])
        assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    m = json.loads((tmp_path / "m" / "results.json").read_text())
    assert b["image_threshold"] == m["image_threshold"] == c.model.stats.image_threshold
    for rb, rm, steps in zip(b["results"], m["results"], c.ref.steps.tolist(), strict=True):
        assert rb["pred_score"] == pytest.approx(rm["pred_score"], abs=ATOL)
        assert rb["pred_label"] == rm["pred_label"] and rb["steps"] == rm["steps"] == steps
    res = runner.invoke(main, ["detect", "--bundle", str(c.bundle), "--seed", "0", "--out", str(tmp_path / "x"),
                               *map(str, c.files)])
    assert res.exit_code != 0 and f"seed {SEED}" in res.output


def test_conditioned_unet_exports_and_runs(tmp_path, one_thread):
    """glad.conditioned: the U-Net graph takes concat(x_t, image) (6 channels); the runtime feeds each
    compacted row its own image."""
    from drdc_trt.export import export_bundle

    # fallback "stop": rows that fall back leave the compacted U-Net batch (and the manifest says so)
    cfg = preset("tiny", "glad").replace(**{"glad.conditioned": True, "unet.in_channels": 6,
                                            "glad.fallback": "stop"})
    torch.manual_seed(0)
    model = GLADModel(cfg, GLADStats(image_threshold=0.5, pixel_threshold=0.5))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    x = sample_images(32, 4, seed=3)
    model.stats.tau, margin = tau_with_margin(step_scores(model, x, 0))
    assert margin > MIN_MARGIN
    ref = GLADDetector(model, "cpu", 0).predict(x)
    assert len(set(ref.steps.tolist())) > 1  # rows of both lengths: the compacted batch changes
    res = export_bundle(model, tmp_path / "b", check_batches=(1,))
    b = load_bundle(res.path)
    assert b.manifest["glad"]["conditioned"] is True and b.inputs("unet")[0].shape == ("batch", 6, 32, 32)
    assert b.manifest["glad"]["fallback"] == "stop"
    _agree(GLADBundleDetector(b, kernels="numpy").predict(x.numpy()), ref, b)


def _without(manifest: dict, dotted: str) -> dict:
    m = json.loads(json.dumps(manifest))
    *head, last = dotted.split(".")
    d = m
    for k in head:
        d = d[k]
    del d[last]
    return m


def _rewritten(path: Path, tmp_path: Path, manifest: dict) -> Path:
    bad = tmp_path / "bundle"
    shutil.copytree(path, bad)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    return bad


@pytest.mark.parametrize("field", ["glad", "glad.t0", "glad.num_steps", "glad.timesteps", "glad.alpha_bar",
                                   "glad.min_step", "glad.trigger_top_k", "glad.trigger_stage", "glad.map_stages",
                                   "glad.feature_stages", "glad.blur_sigma", "glad.top_k", "glad.clip",
                                   "glad.conditioned", "thresholds", "thresholds.image_threshold",
                                   "thresholds.pixel_threshold", "thresholds.tau", "noise", "noise.eps",
                                   "noise_seed", "networks.features", "networks.unet.onnx",
                                   "networks.features.outputs", "max_batch", "outputs"])
def test_manifest_missing_a_field_is_refused_by_name(glad_case, tmp_path, field):
    manifest = json.loads((glad_case.bundle / "manifest.json").read_text())
    last = field.split(".")[-1]
    with pytest.raises(BundleError, match=rf"manifest\.json.*{last}"):
        load_bundle(_rewritten(glad_case.bundle, tmp_path, _without(manifest, field)))


@pytest.mark.parametrize("change,match", [
    (lambda m: m["glad"].update(t0="650"), r"glad\.t0 must be a positive int, got '650'"),
    (lambda m: m["glad"].update(timesteps=[650, 520, 520, 260, 130]), r"glad\.timesteps must list num_steps = 5"),
    (lambda m: m["glad"].update(alpha_bar=[0.1, 0.2]), r"glad\.alpha_bar must list one number in \(0, 1\]"),
    (lambda m: m["glad"].update(trigger_stage=4), r"glad\.trigger_stage must be a backbone stage 0\.\.3"),
    (lambda m: m["glad"].update(feature_stages=[2]), r"glad\.feature_stages must be sorted"),
    (lambda m: m["glad"].update(clip=1), r"glad\.clip must be true or false"),
    (lambda m: m["glad"].update(blur_sigma=-1.0), r"glad\.blur_sigma must be a non-negative number"),
    (lambda m: m["glad"].update(saff_weight="max"), r"glad\.saff_weight must be \"sigmoid\" or \"minmax\", got 'max'"),
    (lambda m: m["glad"].update(fallback="halt"), r"glad\.fallback must be \"continue\" or \"stop\", got 'halt'"),
    (lambda m: m["thresholds"].update(tau="high"), r"thresholds\.tau must be a number or null"),
    (lambda m: m["networks"]["features"]["outputs"][0].update(name="s1"), r"networks\.features\.outputs must be "),
    (lambda m: m.update(max_batch=0), r"max_batch must be a positive int"),
])
def test_manifest_with_a_bad_value_is_refused_by_name(glad_case, tmp_path, change, match):
    manifest = json.loads((glad_case.bundle / "manifest.json").read_text())
    change(manifest)
    with pytest.raises(BundleError, match=match):
        load_bundle(_rewritten(glad_case.bundle, tmp_path, manifest))


def test_runtime_refuses_settings_that_differ_from_the_config(glad_case, tmp_path):
    manifest = json.loads((glad_case.bundle / "manifest.json").read_text())
    manifest["glad"]["alpha_bar"][1] = 0.5  # a valid number, not the schedule's
    with pytest.raises(ValueError, match=r"glad\.alpha_bar .* differ from the config's schedule"):
        GLADBundleDetector(_rewritten(glad_case.bundle, tmp_path, manifest))


def test_each_detector_refuses_the_other_method(glad_case):
    with pytest.raises(ValueError, match="BundleDetector runs DRDC bundles"):
        BundleDetector(glad_case.bundle)
    with pytest.raises(ValueError, match="not a DiffusionAD bundle"):
        DiffusionADBundleDetector(glad_case.bundle)


def test_tensorrt_profiles_cover_compacted_and_feature_rows():
    p = plan_profiles(32, 3, 8)
    assert p["unet"]["x"] == ((1, 3, 32, 32), (8, 3, 32, 32), (8, 3, 32, 32))
    assert p["unet"]["timesteps"] == ((1,), (8,), (8,))
    assert p["features"]["image"] == ((1, 3, 32, 32), (16, 3, 32, 32), (16, 3, 32, 32))


def _tensorrt_blocker() -> str | None:
    from drdc_trt.export.results import tensorrt_blocker as _tensorrt_blocker

    e = _tensorrt_blocker()
    return None if e is None else str(e).splitlines()[0]


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(_tensorrt_blocker() is not None, reason=f"TensorRT plans need TensorRT 10 and an NVIDIA GPU: "
                                                             f"{_tensorrt_blocker()}")
def test_tensorrt_bundle_runs_like_pytorch(glad_case, tmp_path):
    from drdc_trt.export import export_bundle

    c = glad_case
    res = export_bundle(c.model, tmp_path / "trt", tensorrt=True, seed=SEED, check_batches=())
    assert set(res.tensorrt["plans"]) == {"unet", "features"}
    got = load_detector(res.path, backend="tensorrt").predict(c.images.numpy())
    np.testing.assert_allclose(got.anomaly_map, c.ref.anomaly_map.numpy(), atol=1e-3, rtol=0)  # TF32 kernels
    assert np.array_equal(got.steps, c.ref.steps.numpy())


def test_bundle_written_before_the_saff_field_keeps_the_min_max_weight(glad_case, tmp_path):
    """A manifest without glad.saff_weight came from a build that blended with A min–max normalised:
    it loads and runs with that weight (as a checkpoint config without the field does)."""
    manifest = json.loads((glad_case.bundle / "manifest.json").read_text())
    del manifest["glad"]["saff_weight"]
    old = GLADBundleDetector(_rewritten(glad_case.bundle, tmp_path, manifest), kernels="numpy")
    assert old.saff == "minmax"
    assert GLADBundleDetector(glad_case.bundle, kernels="numpy").saff == "sigmoid"


def test_bundle_written_before_the_fallback_field_stops_fallen_back_rows(glad_case, tmp_path):
    """A manifest without glad.fallback came from a build where a fallen-back row stopped there: it
    loads and runs that way (as a checkpoint config without the field does)."""
    manifest = json.loads((glad_case.bundle / "manifest.json").read_text())
    del manifest["glad"]["fallback"]
    assert GLADBundleDetector(_rewritten(glad_case.bundle, tmp_path, manifest), kernels="numpy").fallback == "stop"
