"""Results of a GPU-machine run: packed into at most 8 files for $OUT, unpacked here with
their provenance; and scripts/gpu_check.sh leaves $OUT to the packed files alone."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from drdc_trt.gpu_results import MAX_FILES, PackError, failed_test_files, pack, unpack

ROOT = Path(__file__).resolve().parents[2]
META = {"date": "2000-01-01T00:00:00+00:00", "command": "bash scripts/gpu_check.sh", "gpu": "Test GPU",
        "driver": "580.0", "versions": {"torch": "x", "nvcc": "13.0"},
        "steps": [{"name": "build", "result": "passed", "seconds": "12"}]}


def _results(tmp_path: Path, big: int = 0) -> Path:
    src = tmp_path / "results"
    (src / "maps").mkdir(parents=True)
    (src / "a.md").write_text("# table\n")
    (src / "maps" / "m.bin").write_bytes(np.random.default_rng(0).bytes(big) if big else b"x")
    return src


def test_pack_and_unpack_round_trip_with_provenance(tmp_path):
    src = _results(tmp_path)
    files = pack(src, tmp_path / "out", "run_x", META)
    assert [f.name for f in files] == ["run_x.tar.gz", "run_x_provenance.json"]
    done = unpack(tmp_path / "out", tmp_path / "dest")["run_x"]
    dest = tmp_path / "dest"
    assert (dest / "a.md").read_text() == "# table\n" and (dest / "maps" / "m.bin").read_bytes() == b"x"
    md = (dest / "run_x_provenance.md").read_text()
    for want in ("| command | `bash scripts/gpu_check.sh` |", "| GPU | Test GPU |", "| driver | 580.0 |",
                 "| build | passed | 12 |", "- `maps/m.bin`"):
        assert want in md, want
    assert done[-1] == dest / "run_x_provenance.md" and not (dest / "provenance.json").exists()


def test_large_results_are_cut_into_parts_and_joined(tmp_path):
    src = _results(tmp_path, big=300_000)  # random bytes: gzip cannot shrink them
    files = pack(src, tmp_path / "out", "big", META, part_bytes=100_000)
    parts = [f.name for f in files[:-1]]
    assert parts == [f"big.tar.gz.part{i:02d}" for i in range(len(parts))] and 3 <= len(parts) <= 4
    assert all(f.stat().st_size <= 100_000 for f in files[:-1])
    assert json.loads(files[-1].read_text())["parts"] == parts
    unpack(tmp_path / "out", tmp_path / "dest")
    assert (tmp_path / "dest" / "maps" / "m.bin").read_bytes() == (src / "maps" / "m.bin").read_bytes()
    files[1].unlink()  # a part that did not come back
    with pytest.raises(PackError, match="a part did not come back"):
        unpack(tmp_path / "out", tmp_path / "dest2")


def test_pack_refuses_more_files_than_come_back(tmp_path):
    src = _results(tmp_path, big=300_000)
    with pytest.raises(PackError, match=f"over the {MAX_FILES} files"):
        pack(src, tmp_path / "out", "big", META, part_bytes=30_000)


def test_unpack_refuses_paths_outside_the_destination(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("provenance.json", b"{}"), ("../escape.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (out / "evil.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(PackError, match="outside"):
        unpack(out, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_gpu_check_dry_run_packs_into_out_and_leaves_it_otherwise_alone(tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_STEPS": "import", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    packed = [n for n in names if n != "earlier.txt"]
    assert (out / "earlier.txt").read_text() == "kept" and len(names) <= MAX_FILES
    assert len(packed) == 2 and packed[0].endswith("_dry.tar.gz") and packed[1].endswith("_dry_provenance.json")
    meta = json.loads((out / packed[1]).read_text())
    assert meta["dry_run"] is True and meta["command"] == "bash scripts/gpu_check.sh --dry-run"
    assert [s["name"] for s in meta["steps"]] == ["import with CUDA"] and meta["steps"][0]["result"] == "passed"
    with tarfile.open(out / packed[0]) as tar:
        members = set(tar.getnames())
    assert {"provenance.json", "gpu_check.log", "steps.tsv"} <= members


def test_failed_files_come_from_a_real_pytest_report(tmp_path):
    """A pytest run in the test (not a written-out report): three files fail (one only at setup, one
    in a class, one at collection), one passes, one skips; exactly the failing files come back, once each."""
    tests = tmp_path / "tests" / "unit"
    tests.mkdir(parents=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tests / "__init__.py").write_text("")
    (tests / "test_a.py").write_text("import pytest\n@pytest.fixture\ndef boom():\n    raise RuntimeError\n"
                                     "def test_1(boom):\n    pass\ndef test_2(boom):\n    pass\n")
    (tests / "test_b.py").write_text("def test_ok():\n    pass\n")
    (tests / "test_c.py").write_text("class TestC:\n    def test_no(self):\n        assert 1 == 2\n")
    (tests / "test_d.py").write_text("import pytest\n@pytest.mark.skip(reason='x')\ndef test_s():\n    pass\n")
    (tests / "test_e.py").write_text("import no_such_module_here\n")  # a collection error
    xml = tmp_path / "r.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                          "--rootdir", str(tmp_path), "--continue-on-collection-errors", f"--junitxml={xml}",
                          "tests"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr
    want = ["tests/unit/test_a.py", "tests/unit/test_c.py", "tests/unit/test_e.py"]
    assert sorted(failed_test_files(xml, tmp_path)) == want  # once each (collection errors come first)
    cli = subprocess.run([sys.executable, "-m", "drdc_trt.gpu_results", "failed-files", str(xml), "--root",
                          str(tmp_path)], capture_output=True, text=True, check=True)
    assert sorted(cli.stdout.split()) == want
