"""drdc export's detector seed: by default the one the checkpoint's thresholds were calibrated with
(stats.json detector_seed); another one is exported with a warning that names both."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from drdc_trt.cli import main
from drdc_trt.export.bundle import load_bundle


def export(ckpt, out, *extra):
    r = CliRunner().invoke(main, ["export", "--model", str(ckpt), "--out", str(out),
                                                  "--check-batches", "", *extra])
    assert r.exit_code == 0, r.output + r.stderr
    return load_bundle(out).manifest, r.stderr


def test_default_seed_is_the_calibration_seed(dad_checkpoint, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(dad_checkpoint, ckpt)
    stats = json.loads((ckpt / "stats.json").read_text())
    stats["detector_seed"] = 3
    (ckpt / "stats.json").write_text(json.dumps(stats))
    m, err = export(ckpt, tmp_path / "b3")
    assert m["noise_seed"] == 3 and m["thresholds"]["detector_seed"] == 3 and "warning" not in err
    m, err = export(ckpt, tmp_path / "b0", "--seed", "0")
    assert m["noise_seed"] == 0
    assert "--seed 0" in err and "calibrated with detector seed 3" in err
