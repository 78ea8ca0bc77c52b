"""The package keeps its layers (docs/design.md): engine core → methods → registry → application.

Stdlib only: an AST walk of the source (scripts/layer_report.py), function-level imports included.
Each rule is also run on a small package written here with one deliberate violation, so a rule
that stopped finding anything would fail too."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_report():
    spec = importlib.util.spec_from_file_location("layer_report", ROOT / "scripts" / "layer_report.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["layer_report"] = mod
    spec.loader.exec_module(mod)
    return mod


L = _load_report()


@pytest.fixture(scope="module")
def real():
    return L.report(ROOT)


def test_the_three_methods_are_found(real):
    assert real["methods"] == ["diffusionad", "drdc", "glad"]


def test_no_import_cycles(real):
    assert real["cycles"] == []


def test_no_import_crosses_the_layers_the_wrong_way(real):
    assert real["layer_violations"] == []


def test_no_private_name_is_imported_across_modules(real):
    assert real["private_imports"] == []


def test_no_method_name_is_compared_keyed_or_listed_outside_the_methods(real):
    assert real["method_name_sites"] == []


def test_no_isinstance_on_a_methods_class_outside_its_folder(real):
    assert real["isinstance_on_method_types"] == []


def test_no_module_over_500_lines(real):
    assert real["modules_over_500_lines"] == []


# --------------------------------------------------------------------------- each rule catches its violation
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A minimal drdc_trt tree: core, registry, two methods (a, b) and an application module, plus
    ``files`` (path → source) that add the violation."""
    base = {
        "drdc_trt/__init__.py": "",
        "drdc_trt/core_thing.py": "X = 1\n",
        "drdc_trt/methods/__init__.py": "from .a.spec import SPEC\nfrom .b.spec import SPEC as B\n",
        "drdc_trt/methods/a/__init__.py": "",
        "drdc_trt/methods/a/spec.py": "from drdc_trt import core_thing\n",
        "drdc_trt/methods/a/model.py": "from drdc_trt.core_thing import X\nclass AModel: pass\n",
        "drdc_trt/methods/b/__init__.py": "",
        "drdc_trt/methods/b/spec.py": "",
        "drdc_trt/methods/b/model.py": "from drdc_trt.core_thing import X\n",
        "drdc_trt/cli.py": "from drdc_trt import methods\n",
        "export/__init__.py": "",
    }
    for rel, text in {**base, **files}.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_clean_package_passes_every_rule(tmp_path):
    r = L.report(_package(tmp_path, {}))
    assert r["methods"] == ["a", "b"]
    assert (r["cycles"], r["layer_violations"], r["private_imports"], r["method_name_sites"],
            r["isinstance_on_method_types"], r["modules_over_500_lines"]) == ([], [], [], [], [], [])


@pytest.mark.parametrize("files, key, expect", [
    ({"drdc_trt/core_thing.py": "def f():\n    from drdc_trt.cli import main\n",
      "drdc_trt/cli.py": "from drdc_trt import core_thing\n"}, "cycles", "drdc_trt.cli"),
    ({"drdc_trt/core_thing.py": "def f():\n    from drdc_trt.methods.a import model\n"},
     "layer_violations", "the core imports no method"),
    ({"drdc_trt/methods/b/model.py": "from drdc_trt.methods.a.model import AModel\n"},
     "layer_violations", "a method imports only the core"),
    ({"drdc_trt/methods/b/model.py": "def f():\n    import drdc_trt.cli\n"},
     "layer_violations", "a method imports only the core"),
    ({"drdc_trt/cli.py": "def f():\n    from drdc_trt.methods.a.model import AModel\n"},
     "layer_violations", "the application reaches a method only through the registry"),
    ({"drdc_trt/methods/a/model.py": "_hidden = 1\n", "drdc_trt/core_thing.py": "X = 1\n",
      "drdc_trt/methods/a/other.py": "from drdc_trt.methods.a.model import _hidden\n"},
     "private_imports", "_hidden"),
    ({"drdc_trt/cli.py": "def f(m):\n    return m == 'a'\n"}, "method_name_sites", "m == 'a'"),
    ({"drdc_trt/cli.py": "TABLE = {'b': 1}\n"}, "method_name_sites", "TABLE"),
    ({"drdc_trt/cli.py": "from drdc_trt import methods\ndef f(x):\n    return isinstance(x, methods.AModel)\n"},
     "isinstance_on_method_types", "drdc_trt/cli.py"),
    ({"drdc_trt/core_thing.py": "X = 1\n" * 501}, "modules_over_500_lines", "core_thing.py (501)"),
])
def test_each_rule_catches_a_deliberate_violation(tmp_path, files, key, expect):
    r = L.report(_package(tmp_path, files))
    found = r[key]
    assert found and expect in str(found), (key, found)
