"""The package's structure as numbers and rules, from its own imports (an AST walk, function-level
imports included; stdlib only). docs/design.md states the layers:

    engine core  →  methods (drdc_trt/methods/<name>/)  →  registry (drdc_trt/methods/__init__.py)
                 →  application (APPLICATION below)

* no import cycles;
* the core imports no method, no registry and no application module;
* a method imports the core and its own folder only (never another method, the registry or the
  application);
* the application reaches a method only through the registry (``drdc_trt.methods``);
* no private name (``_x``) imported across modules (the compiled extension ``_C`` excepted);
* no method-name literal compared, keyed or listed outside drdc_trt/methods/ (the program name
  "drdc" where the command line is written, and the Triton model name, excepted by name);
* no ``isinstance`` on a class a method defines, outside its folder;
* no module over 500 lines.

    python scripts/layer_report.py            # a table
    python scripts/layer_report.py --json     # the same as JSON

tests/unit/test_layers.py holds the package to every rule (and checks each rule against a small
package with a deliberate violation)."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"drdc_trt": "drdc_trt", "drdc_trt.export": "export"}  # module prefix → folder under the root
REGISTRY = "drdc_trt.methods"
METHODS_PREFIX = REGISTRY + "."
# The application: the command line, the presets of every method, the entry points that dispatch
# on a saved artifact's method, the runtime and export entries, bench and serving.
APPLICATION = ("drdc_trt.cli", "drdc_trt.cli_common", "drdc_trt.cli_study", "drdc_trt.config", "drdc_trt.train",
               "drdc_trt.predictors", "drdc_trt.demo", "drdc_trt.bench", "drdc_trt.runtime",
               "drdc_trt.runtime.__main__", "drdc_trt.export", "drdc_trt.export.exporter", "drdc_trt.export.int8",
               "drdc_trt.benchmarking", "drdc_trt.benchmarking.methods", "drdc_trt.benchmarking.rows",
               "drdc_trt.benchmarking.runs")
APPLICATION_PACKAGES = ("drdc_trt.serving",)
# method-name literals that name something else: the program (written into result files) and the
# Triton model of `drdc serve`
NOT_A_METHOD = {"drdc": ("drdc_trt/cli_common.py", "drdc_trt/serving/")}
MAX_LINES = 500


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted((root / folder).rglob("*.py")):
            rel = f.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


def method_names(root: Path = ROOT) -> tuple[str, ...]:
    """The method folders: drdc_trt/methods/<name>/ with a spec.py."""
    folder = root / "drdc_trt" / "methods"
    return tuple(sorted(p.name for p in folder.iterdir() if (p / "spec.py").is_file())) if folder.is_dir() else ()


def layer(mod: str) -> str:
    if mod == REGISTRY:
        return "registry"
    if mod.startswith(METHODS_PREFIX):
        return "method:" + mod[len(METHODS_PREFIX):].split(".")[0]
    if mod in APPLICATION or any(mod == p or mod.startswith(p + ".") for p in APPLICATION_PACKAGES):
        return "application"
    return "core"


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
                    if name and name.startswith("_") and not name.startswith("__") and name != "_C":
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


def layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(rule, module, imported module) of every import that crosses the layers the wrong way."""
    bad = []
    for mod, targets in sorted(graph.items()):
        src = layer(mod)
        for t in sorted(targets):
            dst = layer(t)
            if src == "core" and dst != "core":
                bad.append(("the core imports no method, registry or application module", mod, t))
            elif src.startswith("method:") and dst != "core" and dst != src:
                bad.append(("a method imports only the core and its own folder", mod, t))
            elif src == "registry" and not (dst == "core" or dst.startswith("method:")
                                            and t.split(".")[-1] in ("spec", "config", t.split(".")[2])):
                bad.append(("the registry imports the methods' spec and config modules only", mod, t))
            elif src == "application" and dst.startswith("method:"):
                bad.append(("the application reaches a method only through the registry", mod, t))
    return bad


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def method_literals(mods: dict[str, Path], root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(file, line, text) of comparisons, dict keys, subscripts and list/tuple/set items that are a
    method-name string, outside drdc_trt/methods/."""
    names = method_names(root)
    hits = []
    for mod, path in mods.items():
        rel = _rel(path, root)
        if rel.startswith("drdc_trt/methods/"):
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
                if c.value in names and not any(rel.startswith(x) for x in NOT_A_METHOD.get(c.value, ())):
                    hits.append((rel, c.lineno, src[c.lineno - 1].strip()))
    return sorted(set(hits))


def method_classes(mods: dict[str, Path]) -> dict[str, str]:
    """Class name → the method whose folder defines it."""
    out = {}
    for mod, path in mods.items():
        owner = layer(mod)
        if owner.startswith("method:"):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef):
                    out[node.name] = owner[len("method:"):]
    return out


def method_isinstance(mods: dict[str, Path], root: Path = ROOT) -> list[tuple[str, int]]:
    """isinstance(…, X) where X is a class a method defines, outside that method's folder."""
    classes = method_classes(mods)
    hits = []
    for mod, path in mods.items():
        here = layer(mod)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance" and len(node.args) == 2:
                for n in ast.walk(node.args[1]):
                    name = getattr(n, "id", None) or getattr(n, "attr", None)
                    if name in classes and here != f"method:{classes[name]}":
                        hits.append((_rel(path, root), node.lineno))
    return sorted(set(hits))


def report(root: Path = ROOT) -> dict:
    mods = modules(root)
    graph, private = imports(mods)
    sizes = sorted(((len(p.read_text().splitlines()), _rel(p, root)) for p in mods.values()), reverse=True)
    lits = method_literals(mods, root)
    return {"modules": len(mods), "methods": list(method_names(root)), "cycles": cycles(graph),
            "layer_violations": [f"{m} imports {t}: {rule}" for rule, m, t in layer_violations(graph)],
            "method_name_lines": len(lits), "method_name_files": len({f for f, _, _ in lits}),
            "method_name_sites": [f"{f}:{n}: {t}" for f, n, t in lits],
            "isinstance_on_method_types": [f"{f}:{n}" for f, n in method_isinstance(mods, root)],
            "private_imports": [f"{a} imports {c} from {b}" for a, b, c in private],
            "modules_over_500_lines": [f"{p} ({n})" for n, p in sizes if n > MAX_LINES], "largest": sizes[:8]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args(argv)
    r = report()
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"modules: {r['modules']}; methods: {', '.join(r['methods'])}")
    print(f"import cycles: {len(r['cycles'])}")
    for c in r["cycles"]:
        print("  " + " ↔ ".join(c))
    print(f"imports across the layers the wrong way: {len(r['layer_violations'])}")
    for s in r["layer_violations"]:
        print("  " + s)
    print(f"method-name literals outside methods/: {r['method_name_lines']} lines in {r['method_name_files']} files")
    for s in r["method_name_sites"]:
        print("  " + s)
    print(f"isinstance on a method's types outside its folder: {len(r['isinstance_on_method_types'])}")
    for s in r["isinstance_on_method_types"]:
        print("  " + s)
    print(f"private names imported across modules: {len(r['private_imports'])}")
    for s in r["private_imports"]:
        print("  " + s)
    print(f"modules over {MAX_LINES} lines: " + (", ".join(r["modules_over_500_lines"]) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
