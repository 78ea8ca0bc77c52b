"""Results of a GPU-machine run: packed there into the one folder that comes back, unpacked here.

The GPU machine returns at most 8 files of at most 16 MiB from ``$OUT``. ``pack`` puts a
run's whole result folder (tables, JSON, logs, maps) in one ``<name>.tar.gz`` with a
``provenance.json`` (machine, GPU, driver, versions, date, command, commit, step times),
cut into parts of at most 15 MiB when larger, plus a copy of the provenance beside it for
a glance. ``unpack`` checks the parts, joins them, extracts the files (plain files, no
paths leaving the destination) into ``benchmarks/results/`` (or a given folder) and writes
``<name>_provenance.md`` there.

    python -m drdc_trt.gpu_results pack RESULTS_DIR "$OUT" --name gpu_check_<date> --command "..."
    python -m drdc_trt.gpu_results unpack FILES_AT [--dest benchmarks/results]
    python -m drdc_trt.gpu_results failed-files pytest_gpu.xml   # the files to run again, one each
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

MAX_FILES = 8                # files the GPU machine sends back
PART_BYTES = 15 * 2**20      # under the 16 MiB limit per file
PROVENANCE = "provenance.json"


class PackError(RuntimeError):
    pass


def _nvcc_version() -> str:
    try:
        out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "not found"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown"


def provenance(device: str, command: str, extra: dict | None = None) -> dict:
    """Machine, GPU, driver, library versions, date and the command of this run."""
    import torch

    from .benchmarking.machine import environment

    dev = torch.device(device if device != "cuda" or torch.cuda.is_available() else "cpu")
    env = environment(dev, [])
    env["command"] = command
    env["requested_device"] = device
    env["versions"]["nvcc"] = _nvcc_version()
    env["versions"]["torch_cuda"] = torch.version.cuda
    env["commit"] = os.environ.get("DRDC_COMMIT") or _git_commit()
    if extra:
        env.update(extra)
    return env


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git; pass DRDC_COMMIT)"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout; pass DRDC_COMMIT)"


def pack(src: str | Path, out: str | Path, name: str, meta: dict, part_bytes: int = PART_BYTES,
         max_files: int = MAX_FILES) -> list[Path]:
    """``src``'s files (recursively) and ``meta`` as ``provenance.json`` into ``out``: one
    ``<name>.tar.gz`` (or ``<name>.tar.gz.partNN`` pieces) and ``<name>_provenance.json``."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise PackError(f"pack: no result folder {src}")
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        data = json.dumps(meta, indent=2, default=str).encode()
        info = tarfile.TarInfo(PROVENANCE)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for f in sorted(p for p in src.rglob("*") if p.is_file()):
            tar.add(f, arcname=f.relative_to(src).as_posix())
    blob = buf.getvalue()
    pieces = [blob[i:i + part_bytes] for i in range(0, len(blob), part_bytes)] or [b""]
    if len(pieces) + 1 > max_files:
        raise PackError(f"pack: {len(blob) / 2**20:.1f} MiB of results need {len(pieces)} parts of "
                        f"{part_bytes / 2**20:.0f} MiB plus the provenance file, over the {max_files} files that "
                        f"come back; write less into {src}")
    written = []
    if len(pieces) == 1:
        written.append(out / f"{name}.tar.gz")
        written[-1].write_bytes(pieces[0])
    else:
        for i, piece in enumerate(pieces):
            written.append(out / f"{name}.tar.gz.part{i:02d}")
            written[-1].write_bytes(piece)
    written.append(out / f"{name}_provenance.json")
    written[-1].write_text(json.dumps({**meta, "parts": [p.name for p in written[:-1]]}, indent=2, default=str))
    return written


def _archives(folder: Path) -> dict[str, list[Path]]:
    """name -> its archive pieces in order, for every packed run in ``folder``."""
    runs: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.name.endswith(".tar.gz"):
            runs.setdefault(f.name[:-len(".tar.gz")], []).append(f)
        elif ".tar.gz.part" in f.name:
            runs.setdefault(f.name.split(".tar.gz.part")[0], []).append(f)
    return runs


def unpack(folder: str | Path, dest: str | Path = "benchmarks/results") -> dict[str, list[Path]]:
    """Extract every packed run in ``folder`` into ``dest``; returns name -> files written."""
    folder, dest = Path(folder), Path(dest)
    runs = _archives(folder)
    if not runs:
        raise PackError(f"unpack: no <name>.tar.gz or <name>.tar.gz.partNN in {folder}")
    dest.mkdir(parents=True, exist_ok=True)
    done = {}
    for name, pieces in runs.items():
        side = folder / f"{name}_provenance.json"
        if side.is_file():
            want = json.loads(side.read_text()).get("parts")
            if want and want != [p.name for p in pieces]:
                raise PackError(f"unpack: {name}: parts {[p.name for p in pieces]} in {folder}, the provenance "
                                f"lists {want} (a part did not come back?)")
        blob = b"".join(p.read_bytes() for p in pieces)
        written = []
        meta = None
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for m in tar.getmembers():
                if not m.isfile():
                    continue
                target = (dest / m.name).resolve()
                if not str(target).startswith(str(dest.resolve()) + os.sep) or Path(m.name).is_absolute():
                    raise PackError(f"unpack: {name}: member {m.name!r} would land outside {dest}")
                data = tar.extractfile(m).read()
                if m.name == PROVENANCE:
                    meta = json.loads(data)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                written.append(target)
        if meta is None:
            raise PackError(f"unpack: {name}: the archive holds no {PROVENANCE}")
        md = dest / f"{name}_provenance.md"
        md.write_text(provenance_markdown(name, meta, [p.relative_to(dest.resolve()) for p in written]))
        done[name] = [*written, md]
    return done


def provenance_markdown(name: str, meta: dict, files: list) -> str:
    v = meta.get("versions", {})
    rows = [("date (UTC)", meta.get("date")), ("command", f"`{meta.get('command')}`"),
            ("commit", meta.get("commit")), ("host", meta.get("hostname")),
            ("GPU", meta.get("gpu", f"none (device {meta.get('device')})")), ("driver", meta.get("driver")),
            ("CUDA (torch)", v.get("torch_cuda")), ("nvcc", v.get("nvcc")), ("python", v.get("python")),
            ("torch", v.get("torch")), ("drdc_trt", v.get("drdc_trt")), ("CPU", meta.get("cpu")),
            ("dry run", meta.get("dry_run"))]
    lines = [f"# {name}: provenance", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {val} |" for k, val in rows if val is not None]
    steps = meta.get("steps")
    if steps:
        lines += ["", "| step | result | seconds |", "|---|---|---:|"]
        lines += [f"| {s.get('name')} | {s.get('result')} | {s.get('seconds')} |" for s in steps]
    lines += ["", "Files:", ""] + [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"


def _steps(path: str | None) -> list[dict]:
    """Step records written by the shell scripts: one 'name<TAB>result<TAB>seconds' line each."""
    if not path or not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            out.append({"name": parts[0], "result": parts[1], "seconds": parts[2]})
    return out


def failed_test_files(junit_xml: str | Path, root: str | Path = ".") -> list[str]:
    """The test files (paths under ``root``) of the failed or errored cases in a pytest JUnit XML
    report, in report order: the GPU check runs each again in its own process, so that a kernel
    fault that poisoned the CUDA context of the first process does not hide which file had it."""
    import xml.etree.ElementTree as ET  # a report pytest wrote in this run, not outside input

    root, files = Path(root), []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        # "tests.unit.test_x" or "tests.unit.test_x.TestClass"; a collection error has no class
        # name and names the module instead
        parts = [q for q in (case.get("classname") or case.get("name", "")).split(".") if q]
        for n in range(len(parts), 0, -1):
            rel = Path(*parts[:n]).with_suffix(".py")
            if (root / rel).is_file():
                if rel.as_posix() not in files:
                    files.append(rel.as_posix())
                break
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drdc_trt.gpu_results", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="pack a result folder into OUT (on the GPU machine)")
    pk.add_argument("src")
    pk.add_argument("out")
    pk.add_argument("--name", required=True)
    pk.add_argument("--command", required=True, help="the command that produced the results")
    pk.add_argument("--device", default="cuda")
    pk.add_argument("--steps", help="file of 'name<TAB>result<TAB>seconds' lines")
    pk.add_argument("--dry-run", action="store_true", help="record that this was a CPU dry run")
    up = sub.add_parser("unpack", help="unpack what came back into benchmarks/results")
    up.add_argument("folder")
    up.add_argument("--dest", default="benchmarks/results")
    ff = sub.add_parser("failed-files", help="the test files with failed cases in a pytest JUnit XML report")
    ff.add_argument("junit_xml")
    ff.add_argument("--root", default=".")
    a = p.parse_args(argv)
    try:
        if a.cmd == "failed-files":
            print("\n".join(failed_test_files(a.junit_xml, a.root)))
        elif a.cmd == "pack":
            meta = provenance(a.device, a.command, {"steps": _steps(a.steps), "dry_run": bool(a.dry_run)})
            for f in pack(a.src, a.out, a.name, meta):
                print(f"wrote {f} ({f.stat().st_size / 2**20:.2f} MiB)")
        else:
            for name, files in unpack(a.folder, a.dest).items():
                print(f"{name}: {len(files)} files into {a.dest} (provenance: {files[-1]})")
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
