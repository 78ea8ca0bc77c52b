"""The bundle format: atomic writer, verifying loader, input checks (no export needed).

Bundles here are built by hand from small files, so every refusal is tested
against a known good bundle that differs in exactly one respect.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from drdc_trt.config import preset
from drdc_trt.export.bundle import (MANIFEST, NOISE_FILES, SCHEMA_VERSION, BundleError, BundleWriter, load_bundle,
                                    read_manifest, sha256_file)

S, R, T = 32, 4, 3  # tiny preset: image size, rows per image (2 specs × 2 sets), steps


def _manifest(seed: int = 0) -> dict:
    cfg = preset("tiny")
    return {
        "config": cfg.to_dict(),
        "networks": {
            "base": {"onnx": "base.onnx",
                     "inputs": [{"name": "image", "shape": ["batch", 3, S, S], "dtype": "float32"}],
                     "outputs": [{"name": "base_map", "shape": ["batch", 2, 2], "dtype": "float32"}]},
            "unet": {"onnx": "unet.onnx",
                     "inputs": [{"name": "x", "shape": ["batch", 6, S, S], "dtype": "float32"},
                                {"name": "timesteps", "shape": ["batch"], "dtype": "float32"}],
                     "outputs": [{"name": "eps", "shape": ["batch", 3, S, S], "dtype": "float32"}]},
        },
        "noise": {"fill": {"file": NOISE_FILES["fill"], "shape": [R, 3, S, S], "dtype": "float32"},
                  "start": {"file": NOISE_FILES["start"], "shape": [R, 3, S, S], "dtype": "float32"},
                  "steps": {"file": NOISE_FILES["steps"], "shape": [T, R, 3, S, S], "dtype": "float32"}},
        "rows_per_image": R, "normalization": [0.5, 0.25, 3.0, 1.5],
        "fusion_stats": {"image_threshold": 2.0, "pixel_threshold": float("inf")},
        "fusion": {"pool_factors": [1, 2], "mean_filter": 3, "lam": 0.9, "score_window": 2},
        "max_batch": 4, "label_seed": seed, "timesteps": [250, 166, 83], "versions": {"numpy": np.__version__},
    }


def _write(out, seed=0):
    rng = np.random.default_rng(seed)
    with BundleWriter(out) as w:
        w.write_bytes("base.onnx", b"abc")
        w.write_bytes("unet.onnx", bytes(range(256)) * 4)
        w.save_array(NOISE_FILES["fill"], rng.standard_normal((R, 3, S, S)).astype(np.float32))
        w.save_array(NOISE_FILES["start"], rng.standard_normal((R, 3, S, S)).astype(np.float32))
        w.save_array(NOISE_FILES["steps"], rng.standard_normal((T, R, 3, S, S)).astype(np.float32))
        return w.commit(_manifest(seed))


@pytest.fixture
def bundle_dir(tmp_path):
    return _write(tmp_path / "bundle")


def test_manifest_lists_every_file_with_its_sha256(bundle_dir):
    m = json.loads((bundle_dir / MANIFEST).read_text())
    assert m["schema_version"] == SCHEMA_VERSION and m["format"] == "drdc_trt.bundle"
    assert set(m["files"]) == {"base.onnx", "unet.onnx", *NOISE_FILES.values()}
    # known answer: SHA-256("abc")
    assert m["files"]["base.onnx"] == {
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "bytes": 3}
    for name, meta in m["files"].items():
        assert meta["sha256"] == hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest()
    assert m["fusion_stats"]["pixel_threshold"] is None  # inf is stored as null (JSON has no inf)


def test_load_round_trip(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.image_size == S and b.rows_per_image == R and b.max_batch == 4
    assert b.normalization == (0.5, 0.25, 3.0, 1.5)
    assert b.threshold("image_threshold") == 2.0 and b.threshold("pixel_threshold") == float("inf")
    noise = b.load_noise()
    want = np.random.default_rng(0).standard_normal((R, 3, S, S)).astype(np.float32)
    np.testing.assert_array_equal(noise["fill"], want)
    assert noise["steps"].shape == (T, R, 3, S, S) and noise["steps"].dtype == np.float32
    assert b.model_config().image_size == S
    assert [s.name for s in b.inputs("unet")] == ["x", "timesteps"]


def test_refuses_a_missing_file(bundle_dir):
    (bundle_dir / "unet.onnx").unlink()
    with pytest.raises(BundleError, match=r"missing file 'unet\.onnx' \(listed in manifest\.json\)"):
        load_bundle(bundle_dir)


def test_refuses_a_changed_byte(bundle_dir):
    data = bytearray((bundle_dir / "unet.onnx").read_bytes())
    data[100] ^= 0x01  # same size, one bit flipped
    (bundle_dir / "unet.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"file 'unet\.onnx' has SHA-256 .* manifest\.json says .*changed after export"):
        load_bundle(bundle_dir)


def test_refuses_a_changed_size(bundle_dir):
    with open(bundle_dir / "noise_steps.npy", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"file 'noise_steps\.npy' has \d+ bytes, manifest\.json says \d+"):
        load_bundle(bundle_dir)


def test_unverified_load_skips_hashes_but_not_presence(bundle_dir):
    (bundle_dir / "base.onnx").write_bytes(b"abd")
    assert load_bundle(bundle_dir, verify=False).image_size == S
    (bundle_dir / "base.onnx").unlink()
    with pytest.raises(BundleError, match="missing file 'base.onnx'"):
        load_bundle(bundle_dir, verify=False)


def test_refuses_another_schema_version(bundle_dir):
    m = json.loads((bundle_dir / MANIFEST).read_text())
    m["schema_version"] = SCHEMA_VERSION + 1
    (bundle_dir / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=rf"schema_version {SCHEMA_VERSION + 1}, this drdc_trt reads "
                                          rf"schema_version {SCHEMA_VERSION}; re-export"):
        load_bundle(bundle_dir)


def test_refuses_a_folder_without_manifest_and_bad_json(tmp_path, bundle_dir):
    with pytest.raises(BundleError, match="missing manifest.json"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(tmp_path / "nope")
    (bundle_dir / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        read_manifest(bundle_dir)


def test_refuses_a_manifest_naming_an_unlisted_file(bundle_dir):
    m = json.loads((bundle_dir / MANIFEST).read_text())
    m["networks"]["unet"]["onnx"] = "other.onnx"
    (bundle_dir / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"networks\.unet\.onnx names 'other\.onnx', which is not among its files"):
        load_bundle(bundle_dir)


def test_refuses_path_traversal_in_file_names(bundle_dir):
    m = json.loads((bundle_dir / MANIFEST).read_text())
    m["files"]["../evil"] = {"sha256": "0" * 64, "bytes": 0}
    (bundle_dir / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="plain file name"):
        load_bundle(bundle_dir)


def test_noise_file_must_match_its_manifest_shape(tmp_path):
    out = _write(tmp_path / "b")
    m = json.loads((out / MANIFEST).read_text())
    m["noise"]["fill"]["shape"] = [R, 3, S, S + 1]
    (out / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"noise_fill\.npy: holds \(4, 3, 32, 32\) float32, manifest\.json says"):
        load_bundle(out).load_noise()


@pytest.mark.parametrize("shape, dtype, message", [
    ((1, 1, S, S), np.float32, r"input 'image' of the base network: expected shape batch×3×32×32 float32, "
                               r"got \(1, 1, 32, 32\) \(3 channels expected, got 1\)"),
    ((2, 3, 16, 16), np.float32, r"input 'image' of the base network: expected shape batch×3×32×32 float32, "
                                 r"got \(2, 3, 16, 16\)$"),
    ((3, S, S), np.float32, r"expected shape batch×3×32×32 float32, got \(3, 32, 32\)"),
    ((1, 3, S, S), np.float64, r"input 'image' of the base network: expected dtype float32, got float64"),
])
def test_refuses_images_of_the_wrong_shape_or_channels(bundle_dir, shape, dtype, message):
    b = load_bundle(bundle_dir)
    with pytest.raises(ValueError, match=message):
        b.check_images(np.zeros(shape, dtype))
    b.check_images(np.zeros((5, 3, S, S), np.float32))  # any batch fits


def test_unet_inputs_must_share_the_batch(bundle_dir):
    b = load_bundle(bundle_dir)
    with pytest.raises(ValueError, match=r"input 'timesteps' of the unet network: batch 3 differs from the first input's 4"):
        b.check_inputs("unet", [np.zeros((4, 6, S, S), np.float32), np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match=r"input 'x' of the unet network: .*\(6 channels expected, got 3\)"):
        b.check_inputs("unet", [np.zeros((4, 3, S, S), np.float32), np.zeros(4, np.float32)])


def test_writer_is_atomic(tmp_path):
    out = _write(tmp_path / "b", seed=1)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    with pytest.raises(RuntimeError, match="boom"):
        with BundleWriter(out) as w:
            w.write_bytes("base.onnx", b"half-written")
            raise RuntimeError("boom")
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before  # the old bundle is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["b"]               # no staging folder left behind
    new = _write(out, seed=2)                                          # a completed write replaces it whole
    assert load_bundle(new).load_noise()["fill"][0, 0, 0, 0] == np.float32(
        np.random.default_rng(2).standard_normal((R, 3, S, S))[0, 0, 0, 0])


def test_writer_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("precious")
    with pytest.raises(BundleError, match="not empty and holds no manifest.json"):
        BundleWriter(tmp_path / "data")
    assert (tmp_path / "data" / "keep.txt").read_text() == "precious"


def test_writer_refuses_pickle_dtypes_and_bad_names(tmp_path):
    with BundleWriter(tmp_path / "b") as w:
        with pytest.raises(BundleError, match="dtype object"):
            w.save_array("x.npy", np.array([{"a": 1}], dtype=object))
        with pytest.raises(BundleError, match="plain file name"):
            w.path("sub/x.bin")
        with pytest.raises(BundleError, match="plain file name"):
            w.path(MANIFEST)


def test_loader_imports_no_torch(bundle_dir):
    """Load and check a bundle in a process where importing torch raises ImportError."""
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("blocker failed")
        import numpy as np
        from drdc_trt.export.bundle import load_bundle
        b = load_bundle({str(bundle_dir)!r})
        b.check_images(np.zeros((1, 3, 32, 32), np.float32))
        assert b.load_noise()["steps"].shape == (3, 4, 3, 32, 32)
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                       timeout=120, cwd=bundle_dir.parent)  # not the checkout: the installed package
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
