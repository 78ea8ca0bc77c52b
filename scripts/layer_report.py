"""The package's structure as numbers, from its own imports (an AST walk, function-level imports
included; stdlib only): import cycles, the lines that compare, key or list a method name outside
the methods' own code, ``isinstance`` checks on a method's types, private names imported across
modules, and the largest modules.

    python scripts/layer_report.py            # a table
    python scripts/layer_report.py --json     # the same as JSON

The numbers to hold the one-seam layout to (docs: the engine core never imports a method, a method
never imports another, the application reaches methods through the registry)."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"drdc_trt": ROOT / "drdc_trt", "drdc_trt.export": ROOT / "export"}
METHOD_NAMES = ("drdc", "diffusionad", "glad")
# method-name literals that are names of something else: the Triton model and the program
NOT_A_METHOD = {"drdc": ("serving", "cli.py", "bench.py")}


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            rel = f.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


def resolve(mod: str, is_pkg: bool, level: int, name: str | None) -> str:
    """The absolute module of a (possibly relative) import inside ``mod``."""
    if level == 0:
        return name or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module → the package modules it imports; and (module, imported module, name) for private names."""
    graph: dict[str, set[str]] = defaultdict(set)
    private = []
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = resolve(mod, is_pkg, node.level, node.module)
                targets = []
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    targets.append((sub, None) if sub in mods else (src, a.name))
            else:
                continue
            for target, name in targets:
                while target and target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != mod:
                    graph[mod].add(target)
                    if name and name.startswith("_") and not name.startswith("__"):
                        private.append((mod, target, name))
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def method_literals(mods: dict[str, Path]) -> list[tuple[str, int, str]]:
    """(file, line, text) of comparisons, dict keys, subscripts and list/tuple items that are a
    method-name string, outside a method's own folder."""
    hits = []
    for mod, path in mods.items():
        rel = str(path.relative_to(ROOT))
        if "/methods/" in rel:
            continue
        src = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(src), rel)):
            consts = []
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            elif isinstance(node, ast.Dict):
                consts = [k for k in node.keys if isinstance(k, ast.Constant)]
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                consts = [e for e in node.elts if isinstance(e, ast.Constant)]
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                consts = [node.slice]
            for c in consts:
                if c.value in METHOD_NAMES and not any(x in rel for x in NOT_A_METHOD.get(c.value, ())):
                    hits.append((rel, c.lineno, src[c.lineno - 1].strip()))
    return sorted(set(hits))


def method_isinstance(mods: dict[str, Path]) -> list[tuple[str, int]]:
    """isinstance(…, X) outside the methods' folders where X names a method's model/detector/batch type."""
    names = ("DiffusionAD", "GLAD", "DRDCModel")
    hits = []
    for mod, path in mods.items():
        rel = str(path.relative_to(ROOT))
        if "/methods/" in rel or "/models/diffusionad/" in rel or "/models/glad/" in rel:
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance" and len(node.args) == 2:
                if any(n in ast.unparse(node.args[1]) for n in names):
                    hits.append((rel, node.lineno))
    return hits


def report() -> dict:
    mods = modules()
    graph, private = imports(mods)
    sizes = sorted(((len(p.read_text().splitlines()), str(p.relative_to(ROOT))) for p in mods.values()), reverse=True)
    lits = method_literals(mods)
    return {"modules": len(mods), "cycles": cycles(graph), "method_name_lines": len(lits),
            "method_name_files": len({f for f, _, _ in lits}), "method_name_sites": [f"{f}:{n}: {t}" for f, n, t in lits],
            "isinstance_on_method_types": [f"{f}:{n}" for f, n in method_isinstance(mods)],
            "private_imports": [f"{a} imports {c} from {b}" for a, b, c in private],
            "modules_over_500_lines": [f"{p} ({n})" for n, p in sizes if n > 500], "largest": sizes[:8]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args(argv)
    r = report()
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"modules: {r['modules']}")
    print(f"import cycles: {len(r['cycles'])}")
    for c in r["cycles"]:
        print("  " + " ↔ ".join(c))
    print(f"method-name literals outside methods/: {r['method_name_lines']} lines in {r['method_name_files']} files")
    print(f"isinstance on a method's types outside its folder: {len(r['isinstance_on_method_types'])}")
    for s in r["isinstance_on_method_types"]:
        print("  " + s)
    print(f"private names imported across modules: {len(r['private_imports'])}")
    print("modules over 500 lines: " + (", ".join(r["modules_over_500_lines"]) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
