"""What a refactor must not change, as hashes: for each method's tiny preset with fixed seeds, the
config JSON, every checkpoint tensor, every bundle file (the manifest's ``versions`` field aside),
and the scores and maps ``drdc detect`` writes from the checkpoint and from the bundle.

    python scripts/behaviour_snapshot.py --out snap.json             # record
    python scripts/behaviour_snapshot.py --out after.json --compare snap.json   # check (exit 1 on a change)

Runs the installed ``drdc`` (or, with PYTHONPATH set, ``python -m drdc_trt.cli`` from there) on a
small generated data set (about 2 minutes on 2 cores)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ("drdc", "diffusionad", "glad")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:16]


def tensor_hashes(path: Path) -> dict[str, str]:
    from safetensors.numpy import load_file

    return {k: sha(v.tobytes()) + str(v.dtype) + str(v.shape) for k, v in sorted(load_file(str(path)).items())}


def _without_code_paths(v):
    """A manifest without the strings that name a module of this package (documentation of where
    the code lives, e.g. "noise_source": "drdc_trt....Detector(seed=0).noise"): a move changes them."""
    if isinstance(v, dict):
        return {k: _without_code_paths(x) for k, x in v.items() if not (isinstance(x, str) and "drdc_trt." in x)}
    if isinstance(v, list):
        return [_without_code_paths(x) for x in v]
    return v


def file_hashes(folder: Path) -> dict[str, str]:
    out = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(f.relative_to(folder))
        if f.name == "manifest.json":
            m = json.loads(f.read_text())
            m.pop("versions", None)
            m.pop("created_utc", None)
            m = _without_code_paths(m)
            out[rel] = sha(json.dumps(m, sort_keys=True).encode())
        elif f.suffix == ".safetensors":
            out[rel] = json.dumps(tensor_hashes(f), sort_keys=True)
        elif f.suffix == ".json":
            d = json.loads(f.read_text())
            for k in ("versions", "elapsed_s", "seconds", "wall_s", "time_s", "created"):
                d.pop(k, None) if isinstance(d, dict) else None
            out[rel] = sha(json.dumps(d, sort_keys=True).encode())
        else:
            out[rel] = sha(f.read_bytes())
    return out


def run(*args: str) -> None:
    # the installed `drdc`, or the package on PYTHONPATH (a checkout of an earlier commit)
    cmd = [sys.executable, "-m", "drdc_trt.cli"] if os.environ.get("PYTHONPATH") else ["drdc"]
    subprocess.run([*cmd, *args], check=True, stdout=subprocess.DEVNULL)


def snapshot(work: Path) -> dict:
    data = work / "data"
    run("synth", "--out", str(data), "--size", "64", "--seed", "3")
    cat = sorted(p.name for p in data.iterdir() if p.is_dir())[0]
    images = data / cat / "test"
    out: dict = {}
    for m in METHODS:
        ck, bundle = work / f"ck_{m}", work / f"b_{m}"
        run("train", "--data", str(data), "--out", str(ck), "--preset", "tiny", "--method", m,
            "--categories", cat, "--quiet")
        rec = {"config": sha((ck / "config.json").read_bytes()),
               "checkpoint": {k: v for k, v in file_hashes(ck).items()
                              if not k.startswith("train_state") and k != "train_report.json"}}
        run("export", "--model", str(ck), "--out", str(bundle))
        rec["bundle"] = file_hashes(bundle)
        for opt, src, name in (("--model", ck, "detect_checkpoint"), ("--bundle", bundle, "detect_bundle")):
            det = work / f"det_{m}_{name}"
            run("detect", opt, str(src), "--out", str(det), str(images))
            rec[name] = {k: v for k, v in file_hashes(det).items() if not k.endswith(".png")}
        out[m] = rec
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compare", type=Path)
    a = p.parse_args()
    # one fixed folder: paths a manifest or a results file records are then the same in every run
    work = Path(tempfile.gettempdir()) / "drdc_behaviour_snapshot"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        snap = snapshot(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a.out.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    if a.compare is None:
        return 0
    before = json.loads(a.compare.read_text())
    bad = []
    for m in METHODS:
        for part, val in snap[m].items():
            if isinstance(val, dict):
                for k in sorted(set(val) | set(before[m].get(part, {}))):
                    if val.get(k) != before[m].get(part, {}).get(k):
                        bad.append(f"{m} {part} {k}")
            elif val != before[m].get(part):
                bad.append(f"{m} {part}")
    print("unchanged" if not bad else "changed:\n  " + "\n  ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
