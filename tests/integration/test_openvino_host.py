"""The C++ host on OpenVINO: CMake finds OpenVINO through the openvino Python package, builds
the runner and the example host; `drdc_host --bundle B --backend openvino IMAGES` gives the maps
and scores of `drdc detect --backend openvino` on the same bundle and images; bad input ends
with a clear error and a non-zero exit; the installed package serves a downstream
find_package(drdc) project that runs the U-Net through drdc::openvino."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drdc_trt.backends import make_runner
from drdc_trt.loading import load_checkpoint
from drdc_trt.export.exporter import export_bundle
from drdc_trt.float_bounds import decisions_agree

ROOT = Path(__file__).resolve().parents[2]
JOBS = os.environ.get("DRDC_BUILD_JOBS", "2")
# The host runs the same OpenVINO graphs and the same C++ refiner and fusion as the Python
# runtime; measured: identical maps and scores. The tolerance allows float32 reassociation.
ATOL = RTOL = 1e-5


def _run(cmd, cwd=None, timeout=900):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    assert shutil.which("cmake"), "cmake is a build requirement of the package and must be on PATH"
    tmp = tmp_path_factory.mktemp("ov_cmake")
    build, prefix = tmp / "build", tmp / "prefix"
    # No OpenVINO_DIR: CMake asks the Python interpreter for the openvino package's CMake config.
    out = _run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DDRDC_ENABLE_CUDA=OFF",
                "-DDRDC_BUILD_TESTS=OFF", "-DDRDC_BUILD_EXAMPLES=ON", "-DDRDC_BUILD_PYTHON=OFF",
                "-DDRDC_WITH_OPENVINO=AUTO", f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    assert re.search(r"drdc: OpenVINO runner ON 20\d\d\.", out), out
    _run(["cmake", "--build", build, "-j", JOBS])
    _run(["cmake", "--install", build])
    return build / "csrc" / "examples" / "drdc_host", prefix


@pytest.fixture(scope="module")
def bundle_dir(tiny_checkpoint, perturb_unet, tmp_path_factory):
    out = tmp_path_factory.mktemp("ov_host_bundle") / "bundle"
    export_bundle(perturb_unet(load_checkpoint(tiny_checkpoint).eval()), out, max_batch=4, check_batches=())
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov_host_images")
    rng = np.random.default_rng(11)
    paths = []
    for i in range(3):
        paths.append(folder / f"part{i}.bmp")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _host(exe, *args):
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_host_gives_the_maps_and_scores_of_drdc_detect(built, bundle_dir, images, tmp_path):
    from click.testing import CliRunner

    from drdc_trt.cli import main

    exe, _ = built
    host_out, py_out = tmp_path / "host", tmp_path / "py"
    proc = _host(exe, "--bundle", bundle_dir, "--backend", "openvino", "--out", host_out, *images)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"latency per image: median [\d.]+ ms", proc.stdout)
    r = CliRunner().invoke(main, ["detect", "--bundle", str(bundle_dir), "--backend", "openvino", "--batch-size", "3",
                                  "--out", str(py_out), *map(str, images)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    host = json.loads((host_out / "results.json").read_text())
    py = json.loads((py_out / "results.json").read_text())
    assert host["image_threshold"] == py["image_threshold"]
    assert len(host["results"]) == len(py["results"]) == 3
    for h, p in zip(host["results"], py["results"]):
        assert (h["image"], h["anomaly_map"]) == (p["image"], p["anomaly_map"])
        # C++ and Python refiners round otherwise: a label may differ only at a score within 1e-4 of the threshold
        assert decisions_agree([h["pred_label"]], [p["pred_label"]], [p["pred_score"]], py["image_threshold"],
                               1e-4 + 1e-4 * abs(p["pred_score"]))
        hm, pm = np.load(host_out / h["anomaly_map"], allow_pickle=False), np.load(py_out / p["anomaly_map"],
                                                                                  allow_pickle=False)
        assert hm.shape == pm.shape == (32, 32) and hm.dtype == np.float32
        assert float(np.abs(hm - pm).max()) <= ATOL + RTOL * float(np.abs(pm).max())
        assert h["pred_score"] == pytest.approx(p["pred_score"], abs=ATOL, rel=RTOL)
    # the images differ, so do their maps: the comparison is not between constant outputs
    m0, m1 = (np.load(host_out / h["anomaly_map"]) for h in host["results"][:2])
    assert float(np.abs(m0 - m1).max()) > 1e-2


def test_host_streams_split_the_unet_calls_and_keep_its_maps(built, bundle_dir, images, tmp_path):
    """--streams 2 (U-Net calls split over two CPU streams) against --streams 0 (one latency request):
    the same maps within the f32 bound, and each run says how many streams it used."""
    exe, _ = built
    runs = {}
    for n in (0, 2):
        proc = _host(exe, "--bundle", bundle_dir, "--backend", "openvino", "--streams", n, "--out", tmp_path / str(n),
                     *images)
        assert proc.returncode == 0, proc.stderr
        assert f"{max(n, 1)} stream(s)" in proc.stdout
        res = json.loads((tmp_path / str(n) / "results.json").read_text())["results"]
        runs[n] = [np.load(tmp_path / str(n) / r["anomaly_map"]) for r in res]
    for a, b in zip(runs[0], runs[2]):
        assert float(np.abs(a - b).max()) <= ATOL + RTOL * float(np.abs(a).max())


def test_host_runs_int8_bundles_as_the_python_runtime(built, bundle_dir, images, tmp_path):
    """--precision int8 reads the bundle's int8 IR of the U-Net and the ONNX base network in both
    hosts. The refiners round otherwise (as in f32) and a quantizer can turn a difference at a rounding
    edge into one int8 step, so the bound is looser than f32's: 1e-3 of the map's range."""
    from click.testing import CliRunner

    from drdc_trt.cli import main
    from drdc_trt.data.folder import image_array
    from drdc_trt.export.int8 import add_int8

    b8 = _copy(bundle_dir, tmp_path, "int8")
    calib = np.stack([image_array(p, 32).transpose(2, 0, 1) for p in images]).astype(np.float32)
    add_int8(b8, calib, "test fixture images", networks=["unet"], rtol=1.0)  # perturbed weights: plumbing only
    exe, _ = built
    host_out, py_out = tmp_path / "host", tmp_path / "py"
    proc = _host(exe, "--bundle", b8, "--backend", "openvino", "--precision", "int8", "--out", host_out, *images)
    assert proc.returncode == 0, proc.stderr
    assert "precision int8" in proc.stdout
    r = CliRunner().invoke(main, ["detect", "--bundle", str(b8), "--backend", "openvino", "--precision", "int8",
                                  "--batch-size", "3", "--out", str(py_out), *map(str, images)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    host = json.loads((host_out / "results.json").read_text())["results"]
    py = json.loads((py_out / "results.json").read_text())["results"]
    f32 = tmp_path / "f32"
    assert _host(exe, "--bundle", bundle_dir, "--backend", "openvino", "--out", f32, *images).returncode == 0
    worst, moved = 0.0, 0.0
    for h, p, f in zip(host, py, json.loads((f32 / "results.json").read_text())["results"]):
        hm, pm = np.load(host_out / h["anomaly_map"]), np.load(py_out / p["anomaly_map"])
        fm = np.load(f32 / f["anomaly_map"])
        scale = float(np.abs(pm).max())
        worst = max(worst, float(np.abs(hm - pm).max()) / scale)
        moved = max(moved, float(np.abs(hm - fm).max()) / scale)
    assert worst <= 1e-3, worst
    assert moved > 10 * worst  # int8 really ran: the maps left f32's by more than the hosts differ


def _copy(bundle_dir, tmp_path, name="b"):
    dst = tmp_path / name
    shutil.copytree(bundle_dir, dst)
    return dst


def _bad_cases(bundle_dir, images, tmp_path):
    """(name, host arguments, message the error must carry)."""
    missing = _copy(bundle_dir, tmp_path, "missing")
    (missing / "noise_steps.npy").unlink()
    altered = _copy(bundle_dir, tmp_path, "altered")
    data = bytearray((altered / "unet.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (altered / "unet.onnx").write_bytes(bytes(data))
    renamed = _copy(bundle_dir, tmp_path, "renamed")
    m = json.loads((renamed / "manifest.json").read_text())  # the manifest itself is not hashed
    m["networks"]["unet"]["inputs"][0]["name"] = "x_in"
    (renamed / "manifest.json").write_text(json.dumps(m))
    big = tmp_path / "big.bmp"
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(big)
    text = tmp_path / "notes.bmp"
    text.write_text("not an image")
    ov = ("--backend", "openvino", "--out", tmp_path / "out")
    return [
        ("missing file", ("--bundle", missing, *ov, images[0]), r"missing file 'noise_steps.npy' \(listed in manifest.json\)"),
        ("altered file", ("--bundle", altered, *ov, images[0]), r"file 'unet.onnx' has SHA-256 [0-9a-f]{16}\.\.\., "
                                                                r"manifest.json says [0-9a-f]{16}\.\.\.: it changed"),
        ("no manifest", ("--bundle", tmp_path, *ov, images[0]), "missing manifest.json"),
        ("manifest names", ("--bundle", renamed, *ov, images[0]), r"unet.onnx: graph has inputs \[x, timesteps\] and "
                                                                  r"outputs \[eps\]; manifest.json says inputs \[x_in"),
        ("image size", ("--bundle", bundle_dir, *ov, big), r"big.bmp: image is 48x48, the bundle takes 32x32 images"),
        ("unreadable image", ("--bundle", bundle_dir, *ov, text), r"notes.bmp: not a BMP image"),
        ("absent image", ("--bundle", bundle_dir, *ov, tmp_path / "nope.bmp"), r"cannot open image \S*nope.bmp"),
        ("absent device", ("--bundle", bundle_dir, *ov, "--device", "npu9", images[0]),
         r"OpenVINO device 'NPU9': NPU9 is not available on this machine \(OpenVINO sees \[CPU"),
        ("bad precision", ("--bundle", bundle_dir, *ov, "--precision", "int4", images[0]),
         r"OpenVINO precision 'int4': choose f32 or bf16"),
        ("no int8 networks", ("--bundle", bundle_dir, *ov, "--precision", "int8", images[0]),
         r"holds no int8 networks; write them with `drdc export --int8 --calib DATA`"),
    ]


def test_host_refuses_bad_input_with_a_clear_error(built, bundle_dir, images, tmp_path):
    exe, _ = built
    for name, args, message in _bad_cases(bundle_dir, images, tmp_path):
        proc = _host(exe, *args)
        assert proc.returncode > 0, f"{name}: exit {proc.returncode} (a signal is a crash)\n{proc.stderr}"
        assert re.search(message, proc.stderr), f"{name}: {proc.stderr!r}"
        assert proc.stderr.startswith("drdc_host: "), f"{name}: {proc.stderr!r}"
        assert not (tmp_path / "out" / "results.json").exists(), name


def test_downstream_find_package_runs_the_unet(built, bundle_dir, tmp_path):
    _, prefix = built
    build = tmp_path / "build"
    _run(["cmake", "-S", ROOT / "tests" / "integration" / "downstream", "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", build, "-j", JOBS])
    rng = np.random.default_rng(2)
    n, s = 4, 32
    x = np.concatenate([rng.standard_normal((n, 3, s, s)), rng.uniform(-1, 1, (n, 3, s, s))], 1).astype(np.float32)
    x.tofile(tmp_path / "x.raw")
    out = _run([build / "unet_eps", bundle_dir / "unet.onnx", n, s, tmp_path / "x.raw", tmp_path / "eps.raw", 166])
    assert re.match(r"drdc 0\.1\.0 with OpenVINO 20\d\d\.\S+: 4 rows", out), out
    got = np.fromfile(tmp_path / "eps.raw", dtype=np.float32).reshape(n, 3, s, s)
    want = make_runner("openvino", bundle=bundle_dir).unet(x, np.full(n, 166.0, np.float32))
    assert float(np.abs(want).max()) > 0.5
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))
