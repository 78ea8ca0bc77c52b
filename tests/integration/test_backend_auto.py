"""``--backend auto`` (drdc_trt/runtime/choice.py): the rule on machines this one stands in for, the
real answer here, and what the default changes (only the engine: results equal the pinned engine's)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from drdc_trt.cli import main
from drdc_trt.runtime import load_bundle, load_detector
from drdc_trt.runtime import choice as ch


@pytest.fixture(scope="module")
def bundle_dir(tiny_checkpoint, tmp_path_factory):
    from drdc_trt.export import export_bundle

    out = tmp_path_factory.mktemp("auto") / "bundle"
    export_bundle(tiny_checkpoint, out, check_batches=())
    return out


def probe(trt=False, ov=True, ort=True, bf16=False, check_ok=True, amx=False):
    def check(bundle):
        return {"ok": check_ok, "rtol": ch.BF16_RTOL,
                "networks": {"unet": {"max_abs": 0.01 if check_ok else 0.2, "ref_max": 1.0, "limit": 0.05,
                                      "ok": check_ok}}}
    return ch.Probe(tensorrt_blocker=lambda: None if trt else "no CUDA GPU", openvino=lambda: ov,
                    onnxruntime=lambda: ort, cpu_bf16=lambda: bf16, bf16_check=check, cpu_amx=lambda: amx)


def test_the_rule_on_each_kind_of_machine(bundle_dir):
    b = load_bundle(bundle_dir)
    pick = lambda **kw: (lambda c: (c.backend, c.precision))(ch.choose(b, probe(**kw)))
    assert pick(trt=True, bf16=True) == ("tensorrt", None)               # a GPU machine
    assert pick(bf16=True) == ("openvino", "bf16")                       # a CPU with AVX-512 BF16 / AMX
    assert pick(bf16=True, check_ok=False) == ("onnxruntime", None)      # bf16 too far from f32 here
    assert pick(bf16=False) == ("onnxruntime", None)                     # an AVX2 CPU: f32 on the checked engine
    assert pick(ov=False) == ("onnxruntime", None)
    assert pick(ort=False) == ("openvino", "f32")
    c = ch.choose(b, probe(bf16=True, check_ok=False))
    assert any("network unet differs from f32 by 0.2 > 0.05" in x for x in c.considered)
    assert "no CUDA GPU" in c.text() and c.to_dict()["bf16_check"]["ok"] is False
    with pytest.raises(ValueError, match="pip install openvino or onnxruntime"):
        ch.choose(b, probe(ov=False, ort=False))
    assert any("openvino int8: the bundle has no int8 networks" in x for x in c.considered)


def test_a_bundle_with_int8_networks_runs_them(bundle_dir, tmp_path):
    """int8 ranks before ONNX Runtime once the bundle carries int8 networks, and before bf16 except on a
    CPU with native bf16 and no AMX, where OpenVINO bf16 is the faster (only a manifest section is needed
    for the rule; the files are what `drdc export --int8` writes)."""
    b = load_bundle(bundle_dir)
    b8 = type(b)(path=b.path, manifest={**b.manifest, "int8": {"networks": {"unet": {"xml": "u.xml", "bin": "u.bin"}}}})
    pick = lambda **kw: (lambda c: (c.backend, c.precision))(ch.choose(b8, probe(**kw)))
    assert pick(trt=True) == ("tensorrt", None)
    assert pick(bf16=False) == ("openvino", "int8")                           # AVX2 / VNNI without bf16
    assert pick(bf16=True, amx=True) == ("openvino", "int8")                  # AMX-INT8 (Intel Xeon)
    assert pick(bf16=True, amx=None) == ("openvino", "int8")                  # AMX unknown: what was asked
    assert pick(bf16=True, amx=False) == ("openvino", "bf16")                 # AVX-512 BF16 without AMX
    assert pick(bf16=True, amx=False, check_ok=False) == ("openvino", "int8")  # bf16 failed its check
    assert pick(ov=False) == ("onnxruntime", None)
    assert "int8 networks (unet" in ch.choose(b8, probe()).reason
    c = ch.choose(b8, probe(bf16=True, amx=False))
    assert any("native bf16 but no AMX" in x for x in c.considered)


def test_cpu_amx_reads_the_flag():
    flags = open("/proc/cpuinfo").read()
    assert ch.cpu_amx() == (" amx_int8" in flags)


def test_check_inputs_follow_the_manifest(bundle_dir):
    b = load_bundle(bundle_dir)
    image, = ch.check_inputs(b, "base")
    assert image.shape == (2, 3, b.image_size, b.image_size) and image.dtype == np.float32
    assert -1 <= image.min() and image.max() <= 1
    x, t = ch.check_inputs(b, "unet")
    assert x.shape == (2, 6, b.image_size, b.image_size) and t.tolist() == pytest.approx([99.9, 899.1], abs=0.01)


def test_bf16_check_flags_a_network_beyond_the_bound(bundle_dir, monkeypatch):
    """The comparison itself, with OpenVINO's bf16 stood in by f32 outputs moved by a known amount."""
    from drdc_trt.backends import openvino_backend as ovb

    real = ovb.OvNetwork

    def fake(path, specs_in, spec_out, device, precision, *a, **k):
        net = real(path, specs_in, spec_out, device, "f32")
        if precision == "bf16":
            run = net.run
            net.run = lambda *arrays: run(*arrays) * (1 + shift)
        return net

    monkeypatch.setattr(ovb, "OvNetwork", fake)
    b = load_bundle(bundle_dir)
    shift = 0.01
    r = ch.bf16_check(b)
    assert r["ok"] and set(r["networks"]) == {"base", "unet"}
    for n in r["networks"].values():   # max |0.01·y| = 0.01·max|y|, inside 0.05·max|y|
        assert n["max_abs"] == pytest.approx(0.01 * n["ref_max"], rel=1e-3) and n["limit"] == pytest.approx(0.05 * n["ref_max"])
    shift = 0.08
    assert not ch.bf16_check(b)["ok"]


def test_auto_is_the_default_and_runs_what_it_names(bundle_dir, synthetic_root):
    import openvino  # noqa: F401  (dev dependencies: both engines are here)
    import onnxruntime  # noqa: F401

    want = ch.choose(load_bundle(bundle_dir))
    bf16 = ch.cpu_bf16() and want.bf16_check["ok"]
    assert (want.backend, want.precision) == (("openvino", "bf16") if bf16 else ("onnxruntime", None))
    det = load_detector(bundle_dir)
    assert det.choice.backend == want.backend and det.runner.name == want.backend
    s = load_bundle(bundle_dir).image_size
    images = np.random.default_rng(0).uniform(-1, 1, (3, 3, s, s)).astype(np.float32)
    got = det.predict(images)
    kw = {"precision": "bf16"} if bf16 else {}
    pinned = load_detector(bundle_dir, backend=want.backend, **kw).predict(images)
    np.testing.assert_array_equal(got.anomaly_map, pinned.anomaly_map)   # the same engine, the same code
    r = CliRunner().invoke(main, ["info", "--bundle", str(bundle_dir)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["auto_backend"]["backend"] == want.backend
    img = next((synthetic_root / "brushed" / "test" / "good").iterdir())
    r = CliRunner().invoke(main, ["detect", "--bundle", str(bundle_dir), "--out", str(bundle_dir.parent / "d"), str(img)])
    assert r.exit_code == 0 and f"--backend auto picks {want.backend}" in r.output, r.output
    r = CliRunner().invoke(main, ["detect", "--bundle", str(bundle_dir), "--backend", "openvino", "--out",
                                  str(bundle_dir.parent / "e"), str(img)])
    assert r.exit_code == 0 and "auto picks" not in r.output, r.output
