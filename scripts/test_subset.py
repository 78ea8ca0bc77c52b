"""A subset of an MVTec-layout dataset's test split, as symbolic links (nothing is copied): every
category's train split and ground truth linked whole, and from each test folder (a defect type or
good) every k-th image of its sorted list, so each type keeps its share. For checks that need a
slow engine on part of the test split, e.g. PyTorch f32 beside a bundle's engine:

    python scripts/test_subset.py --data ../shared/data/magnetic_tile_defects --every 8 --out /tmp/mt_sub
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def make_subset(data: Path, out: Path, every: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    cats = sorted(p for p in data.iterdir() if (p / "test").is_dir())
    if not cats:
        raise SystemExit(f"{data}: no <category>/test folder (not an MVTec-layout dataset)")
    for cat in cats:
        dst = out / cat.name
        (dst / "test").mkdir(parents=True, exist_ok=True)
        for part in ("train", "ground_truth"):
            if (cat / part).is_dir() and not (dst / part).exists():
                os.symlink((cat / part).resolve(), dst / part)
        for kind in sorted(p for p in (cat / "test").iterdir() if p.is_dir()):
            files = sorted(f for f in kind.iterdir() if f.is_file())
            (dst / "test" / kind.name).mkdir(exist_ok=True)
            for f in files[::every]:
                link = dst / "test" / kind.name / f.name
                if not link.exists():
                    os.symlink(f.resolve(), link)
            counts[f"{cat.name}/{kind.name}"] = len(files[::every])
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="MVTec-layout dataset root")
    ap.add_argument("--out", required=True, type=Path, help="new folder for the links")
    ap.add_argument("--every", type=int, default=8, help="keep every k-th test image of each type [8]")
    a = ap.parse_args()
    if a.every < 1:
        ap.error("--every must be ≥ 1")
    counts = make_subset(a.data, a.out, a.every)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()), f"({sum(counts.values())} test images)")


if __name__ == "__main__":
    main()
