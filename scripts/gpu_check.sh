#!/usr/bin/env bash
# GPU check of the compiled core, for a machine with an NVIDIA GPU (H100/H200),
# torch with CUDA, nvcc, cmake and pybind11, and no network.
#
#  1. builds and installs drdc_trt with the CUDA kernels for sm_90 (pip, or a
#     plain CMake build staged on PYTHONPATH when scikit-build-core is absent);
#  2. runs the csrc tests, CUDA cases included (kernels vs the PyTorch
#     reference, C++ refiner vs the reference loop, CUDA graph replay), and the
#     standalone CMake build + ctest (test_cuda, example_analytic_cuda);
#  3. benchmarks the fused kernels against the eager PyTorch ops at N=64 rows
#     of 224² (fp32 and fp16 network buffers);
#  4. runs drdc-bench: the whole pipeline on every backend available there
#     (torch eager and torch-compiled, fp32 and bf16; onnxruntime / tensorrt rows
#     say why they cannot run without onnxruntime-gpu / TensorRT), loops torch
#     and csrc, batch 1/8/32, the fast and the paper U-Net at 224², each against
#     the eager fp32 baseline. Each command is bounded (--budget-s 240, timeout 420 s).
# Results: benchmarks/results/bench_kernels_cuda_<date>{,_fp16}.{json,md},
# benchmarks/results/drdc_bench_cuda_{fast,paper}_<date>.{json,md} and
# benchmarks/results/gpu_check_<date>.md (+ .log). Exit status: 0 when every
# step passed. Each step is under 10 minutes.
#
#   bash scripts/gpu_check.sh core; bash scripts/gpu_check.sh bench   # two ≤ 10-minute commands
#   (DRDC_CUDA_ARCHITECTURES=90 by default)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATE=$(date -u +%Y-%m-%d)
OUT="$ROOT/benchmarks/results"
mkdir -p "$OUT"
LOG="$OUT/gpu_check_$DATE.log"
SUMMARY="$OUT/gpu_check_$DATE.md"
ARCHS=${DRDC_CUDA_ARCHITECTURES:-90}
JOBS=$(nproc 2>/dev/null || echo 8)
PY=${PYTHON:-python3}
export ROOT ARCHS JOBS PY
# -P: do not put the current folder on sys.path, so tests import the
# installed package (with its compiled _C), never the source folder.
if "$PY" -P -c pass 2>/dev/null; then PYTEST=("$PY" -P -m pytest); else PYTEST=(pytest); fi
: > "$LOG"
declare -a STEPS=()
status=0

log() { echo "[gpu_check] $*" | tee -a "$LOG"; }
# run NAME TIMEOUT CMD...: runs a step, records pass/fail, keeps going
run() {
  local name=$1 limit=$2; shift 2
  log "== $name: $*"
  local t0=$SECONDS rc
  if [ "$(type -t "$1")" = function ]; then  # timeout cannot run a shell function directly
    timeout "$limit" bash -c "$(declare -f "$1"); $*" >>"$LOG" 2>&1
  else
    timeout "$limit" "$@" >>"$LOG" 2>&1
  fi
  rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then STEPS+=("| $name | passed | ${dt}s |"); log "   passed (${dt}s)"
  else STEPS+=("| $name | FAILED (exit $rc) | ${dt}s |"); log "   FAILED (exit $rc, ${dt}s) — see $LOG"; status=1; fi
  return $rc
}

# ---------------------------------------------------------------- toolchain
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break
  done
fi
command -v nvcc >/dev/null 2>&1 || { log "nvcc not found"; exit 1; }
export CUDACXX=$(command -v nvcc)
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS DRDC_BUILD_JOBS=$JOBS
log "nvcc: $(nvcc --version | tail -1); cmake: $(cmake --version | head -1); archs: $ARCHS; jobs: $JOBS"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG" || true

# ---------------------------------------------------------------- 1. build + install
install_with_cmake() {
  # No scikit-build-core (offline machine): build _C with CMake and stage the
  # package (sources + module) on PYTHONPATH.
  local build="$ROOT/build/gpu_check" stage="$ROOT/build/gpu_check_stage"
  cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDRDC_BUILD_PYTHON=ON -DDRDC_BUILD_TESTS=OFF \
    -DDRDC_BUILD_EXAMPLES=OFF -DDRDC_INSTALL_PACKAGE=OFF -DDRDC_CUDA_ARCHITECTURES="$ARCHS" \
    -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" &&
  cmake --build "$build" -j "$JOBS" &&
  rm -rf "$stage" && mkdir -p "$stage" && cp -r "$ROOT/drdc_trt" "$stage/" &&
  { [ ! -d "$ROOT/export" ] || cp -r "$ROOT/export" "$stage/drdc_trt/export"; } &&
  cp "$build"/_C*.so "$stage/drdc_trt/"
}
if "$PY" -c "import scikit_build_core" 2>/dev/null; then
  run "pip install (sm_$ARCHS)" 420 env CMAKE_ARGS="-DDRDC_CUDA_ARCHITECTURES=$ARCHS" \
    "$PY" -m pip install . --no-build-isolation --no-deps -q ||
  { run "cmake build of _C (fallback)" 420 install_with_cmake &&
    export PYTHONPATH="$ROOT/build/gpu_check_stage${PYTHONPATH:+:$PYTHONPATH}"; }
else
  run "cmake build of _C (no scikit-build-core)" 420 install_with_cmake &&
  export PYTHONPATH="$ROOT/build/gpu_check_stage${PYTHONPATH:+:$PYTHONPATH}"
fi
cd /tmp  # import the installed package, not the source folder
run "import with CUDA" 60 "$PY" -c "
import torch, drdc_trt._C as C
print(C.build_info, 'devices:', C.cuda_device_count(), 'torch', torch.__version__, torch.version.cuda)
assert C.build_info['cuda'] and C.cuda_device_count() > 0 and torch.cuda.is_available()"
cd "$ROOT"

# PART (first argument) keeps each device command under 10 minutes:
#   core  — build, CUDA tests, kernel benchmark (steps 1–3)
#   bench — build, drdc-bench on the fast and paper sizes (steps 1, 4)
#   all   — everything (default; over 10 minutes on one command)
PART=${1:-all}
if [ "$PART" != bench ]; then
# ---------------------------------------------------------------- 2. tests
# DRDC_REQUIRE_CUDA=1: the CUDA cases must run here; a skip would be an error.
run "pytest csrc (CUDA cases)" 420 env DRDC_REQUIRE_CUDA=1 "${PYTEST[@]}" -p no:cacheprovider -q -rs \
  tests/unit/test_csrc_kernels.py tests/unit/test_csrc_rng.py tests/unit/test_csrc_errors.py \
  tests/integration/test_csrc_refiner.py tests/integration/test_csrc_cmake_build.py
PYTEST_LINE=$(grep -E "^=*ERROR|^=* ?[0-9]+ (passed|failed)" "$LOG" | tail -1)
SKIPPED_CUDA=$(grep -c "SKIPPED.*CUDA" "$LOG" || true)

# ---------------------------------------------------------------- 3. benchmark
cd /tmp
run "bench fp32" 300 "$PY" "$ROOT/benchmarks/bench_kernels.py" --device cuda --out-dir "$OUT" --date "$DATE"
run "bench fp16" 300 "$PY" "$ROOT/benchmarks/bench_kernels.py" --device cuda --net-dtype float16 --tag fp16 \
  --out-dir "$OUT" --date "$DATE"

fi
if [ "$PART" != core ]; then
# ---------------------------------------------------------------- 4. drdc-bench (whole pipeline)
# `python -m drdc_trt.bench` is the drdc-bench console script (also when the
# package is staged on PYTHONPATH by the CMake fallback). --budget-s keeps each
# command inside its timeout with its result files written; rows it had no time
# for are listed as 'not run'.
BENCH_ARGS=(--device cuda --backends torch,torch-compiled,onnxruntime,tensorrt --loop torch,csrc
            --batch 1,8,32 --precision float32,bfloat16 --out "$OUT" --date "$DATE")
run "drdc-bench fast (224², batch 1/8/32)" 420 "$PY" -m drdc_trt.bench --config fast "${BENCH_ARGS[@]}" \
  --warmup-s 1 --min-iters 5 --max-seconds 2 --budget-s 240
run "drdc-bench paper (224², batch 1/8/32)" 420 "$PY" -m drdc_trt.bench --config paper "${BENCH_ARGS[@]}" \
  --warmup-s 1 --min-iters 3 --max-seconds 2 --budget-s 240
cd "$ROOT"
fi

# ---------------------------------------------------------------- summary
{
  echo "# GPU check — $DATE"
  echo
  echo "- command: \`bash scripts/gpu_check.sh\` (DRDC_CUDA_ARCHITECTURES=$ARCHS)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "- nvcc: $(nvcc --version | tail -1)"
  echo "- torch: $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null)"
  echo "- pytest: ${PYTEST_LINE:-n/a} (CUDA-skip lines: $SKIPPED_CUDA)"
  echo
  echo "| step | result | time |"
  echo "|---|---|---:|"
  printf '%s\n' "${STEPS[@]}"
  echo
  for f in "$OUT/bench_kernels_cuda_$DATE.md" "$OUT/bench_kernels_cuda_${DATE}_fp16.md" \
           "$OUT/drdc_bench_cuda_fast_$DATE.md" "$OUT/drdc_bench_cuda_paper_$DATE.md"; do
    [ -f "$f" ] && { sed 's/^# /## /' "$f"; echo; }
  done
  echo "Full log: \`benchmarks/results/gpu_check_$DATE.log\`."
} > "$SUMMARY"
log "summary: $SUMMARY (status $status)"
exit $status
