"""The standalone CMake project: configure, build (C++ tests, example host and,
when nvcc is present, the CUDA kernels), run ctest, install, and build a host
that finds the installed package with find_package(drdc)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOBS = os.environ.get("DRDC_BUILD_JOBS", "2")  # the CI machines have two cores


def _run(cmd, cwd=None, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    assert shutil.which("cmake"), "cmake is a build requirement of the package and must be on PATH"
    if not (ROOT / "CMakeLists.txt").is_file() or not (ROOT / "csrc").is_dir():
        pytest.skip("the C++ sources are not beside the tests")
    tmp = tmp_path_factory.mktemp("cmake")
    build, prefix = tmp / "build", tmp / "prefix"
    _run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DDRDC_BUILD_TESTS=ON",
          "-DDRDC_BUILD_EXAMPLES=ON", "-DDRDC_BUILD_PYTHON=OFF", "-DDRDC_CUDA_ARCHITECTURES=90",
          f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    _run(["cmake", "--build", build, "-j", JOBS], timeout=900)
    ctest = _run(["ctest", "--output-on-failure"], cwd=build)
    _run(["cmake", "--install", build])
    return build, prefix, ctest


def test_ctest_passes(installed):
    build, _, out = installed
    assert re.search(r"100% tests passed, 0 tests failed out of \d+", out), out
    for name in ("test_core", "test_refiner", "fuzz_json_lite", "example_analytic_cpu"):
        assert re.search(rf"{name} \.+\s+Passed", out), f"{name} did not pass:\n{out}"
    cache = (build / "CMakeCache.txt").read_text()
    if shutil.which("nvcc") or os.environ.get("CUDACXX"):
        # CI compiles the CUDA sources even though nothing built from them runs there
        assert re.search(r"CMAKE_CUDA_COMPILER:\w+=\S+nvcc", cache), "nvcc present but CUDA not enabled"
        objs = {p.name for p in build.rglob("*.cu.o")}
        assert {"kernels_cuda.cu.o", "gaussian_cuda.cu.o", "analytic_runner_cuda.cu.o"} <= objs, objs
        assert "test_cuda" in out


def test_example_reports_exact_recovery(installed):
    build, _, _ = installed
    exe = next(build.rglob("drdc_host"))
    out = subprocess.run([exe, "--analytic", "--device", "cpu", "--size", "32", "--batch", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    err = float(re.search(r"max \|reconstruction - input\| = (\S+)", out.stdout).group(1))
    assert err <= 1e-5
    assert re.search(r"image 0: score [-\d.]+", out.stdout)


def test_find_package_host(installed, tmp_path):
    _, prefix, _ = installed
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\n"
        "project(host LANGUAGES CXX)\n"
        "find_package(drdc 0.1 CONFIG REQUIRED)\n"
        "add_executable(host main.cpp)\n"
        "target_link_libraries(host PRIVATE drdc::drdc)\n")
    (tmp_path / "main.cpp").write_text(
        '#include <cstdio>\n#include "drdc/drdc.h"\n'
        "int main() {\n"
        "  auto l = drdc::grid_labels(16, {4}, 2, 0);\n"
        "  auto t = drdc::ddim_timesteps(250, 10);\n"
        '  std::printf("%s %d %d\\n", drdc::version(), l.data[0], t[1]);\n'
        "  return 0;\n}\n")
    build = tmp_path / "build"
    _run(["cmake", "-S", tmp_path, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", build, "-j", JOBS])
    out = _run([build / "host"])
    assert out.split() == ["0.1.0", "1", "225"]  # grid_labels(16, [4], 2, 0)[0, 0, 0] == 1


def test_cpu_only_build(tmp_path):
    """Without CUDA (DRDC_ENABLE_CUDA=OFF) the library still builds and passes its
    tests, and every CUDA request fails cleanly with kNotCompiled (test_core checks it)."""
    assert shutil.which("cmake"), "cmake is a build requirement of the package and must be on PATH"
    build = tmp_path / "build"
    _run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DDRDC_ENABLE_CUDA=OFF",
          "-DDRDC_BUILD_TESTS=ON", "-DDRDC_BUILD_EXAMPLES=ON", "-DDRDC_BUILD_PYTHON=OFF"])
    _run(["cmake", "--build", build, "-j", JOBS], timeout=900)
    out = _run(["ctest", "--output-on-failure"], cwd=build)
    assert re.search(r"100% tests passed, 0 tests failed out of 5", out), out  # core, refiner, JSON fuzzer, example
    assert "test_cuda" not in out
    assert not list(build.rglob("*.cu.o"))
