#!/usr/bin/env bash
# GPU check of the engine: one prepared command for the GPU machine (one H200, no network,
# at most 10 minutes per command, results only from the files left in $OUT: at most 8 of
# 16 MiB). See docs/gpu.md for the plan and the measured CPU dry run.
#
#   1. build: pip install . --no-build-isolation --no-deps, CUDA kernels for sm_$ARCHS, the
#      C++ tests built beside it (build/gpu_check);
#   2. import: build info, CUDA device count and, when 0, the CUDA runtime's reason;
#   3. ctest: the C++ tests, test_cuda included (DRDC_REQUIRE_CUDA=1: a missing GPU fails);
#   4. pytest -m gpu: the GPU-marked tests (DRDC_REQUIRE_CUDA=1; TensorRT's skip with their
#      reason; the standalone CMake build test is CPU work that CI covers, so left out); when
#      it fails, each file with a failure again in its own process (a kernel fault poisons
#      the CUDA context of the rest of the run);
#   4b. compute-sanitizer: test_cuda under memcheck and racecheck;
#   5. drdc-bench on the fast preset (224²): eager fp32 (the baseline), AMP bf16,
#      torch-compiled (CUDA graphs), loop torch and csrc, batch 1/8/32, bounded by --budget-s;
#   6. pack: every result and log into $OUT as <name>.tar.gz (+ parts if large) and
#      <name>_provenance.json (machine, GPU, driver, versions, date, command, step times).
# Back here: python -m drdc_trt.gpu_results unpack <files_at>   (into benchmarks/results/)
#
#   bash scripts/gpu_check.sh              # on the GPU machine (run tool: no carry needed)
#   bash scripts/gpu_check.sh --dry-run    # every step on this CPU: cpu device, tiny preset
#
# Environment: GPU_CHECK_BUDGET_S (total seconds, default 330), DRDC_CUDA_ARCHITECTURES (90),
# OUT (where the packed files go; default build/gpu_out), DRDC_COMMIT (recorded commit),
# GPU_CHECK_STEPS (comma-separated subset of build,import,ctest,pytest,sanitize,bench; default all).
# $OUT is never emptied or replaced: only the packed files are written into it.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$SECONDS
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
DATE=$(date -u +%Y-%m-%d)
PY=${PYTHON:-python3}
ARCHS=${DRDC_CUDA_ARCHITECTURES:-90}
JOBS=${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 8)}
BUDGET=${GPU_CHECK_BUDGET_S:-330}
STEPS_WANTED=${GPU_CHECK_STEPS:-build,import,ctest,pytest,sanitize,bench}
PACK_TO=${OUT:-$ROOT/build/gpu_out}
NAME=gpu_check_$DATE
if [ $DRY = 1 ]; then
  NAME=${NAME}_dry
  DEVICE=cpu
  export DRDC_REQUIRE_CUDA=0
else
  DEVICE=cuda
  export DRDC_REQUIRE_CUDA=1
fi
RESULTS=$ROOT/build/gpu_check_results   # what gets packed (build/ is git-ignored)
BUILD_DIR=$ROOT/build/gpu_check
rm -rf "$RESULTS" && mkdir -p "$RESULTS" "$PACK_TO"
LOG=$RESULTS/gpu_check.log
STEPS=$RESULTS/steps.tsv
: > "$LOG"
: > "$STEPS"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
status=0

log() { echo "[gpu_check] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - (SECONDS - START))); }
want() { [[ ",$STEPS_WANTED," == *",$1,"* ]]; }
# step NAME LIMIT CMD...: runs a step under min(LIMIT, budget left − 30 s for packing), records it
step() {
  local name=$1 limit=$2; shift 2
  local room=$(($(left) - 30))
  if [ "$room" -lt 10 ]; then
    log "== $name: not run (budget of ${BUDGET}s spent)"; printf '%s\tnot run (budget)\t0\n' "$name" >> "$STEPS"
    status=1; return 1
  fi
  [ "$limit" -gt "$room" ] && limit=$room
  log "== $name (limit ${limit}s): $*"
  local t0=$SECONDS rc
  timeout -k 10 "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  local dt=$((SECONDS - t0)) res=passed
  [ $rc -ne 0 ] && res="FAILED (exit $rc)" && status=1
  [ $rc -eq 124 ] && res="FAILED (timed out after ${limit}s)"
  log "   $res (${dt}s)"
  printf '%s\t%s\t%s\n' "$name" "$res" "$dt" >> "$STEPS"
  return $rc
}

log "device $DEVICE, dry run $DRY, budget ${BUDGET}s, results $RESULTS, packed into $PACK_TO"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$LOG" 2>&1 || log "no nvidia-smi"
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break; done
fi
command -v nvcc >/dev/null 2>&1 && export CUDACXX=$(command -v nvcc)

# ---------------------------------------------------------------- 1. build (+ C++ tests)
if want build; then
  PIP_ISO=(--no-build-isolation)
  "$PY" -c "import scikit_build_core" 2>/dev/null || PIP_ISO=()   # offline GPU machine has it; else isolated
  step "build (pip, sm_$ARCHS, C++ tests)" 300 env CMAKE_ARGS="-DDRDC_BUILD_TESTS=ON -DDRDC_CUDA_ARCHITECTURES=$ARCHS" \
    "$PY" -m pip install . "${PIP_ISO[@]}" --no-deps -q -C build-dir="$BUILD_DIR"
fi

# ---------------------------------------------------------------- 2. import (outside the source tree)
if want import; then
  step "import with CUDA" 60 bash -c "cd /tmp && '$PY' -c \"
import torch, drdc_trt._C as C
print(C.build_info, 'devices:', C.cuda_device_count(), 'status:', repr(C.cuda_status()),
      'torch', torch.__version__, torch.version.cuda)
if '$DEVICE' == 'cuda':
    assert C.build_info['cuda'] and C.cuda_device_count() > 0 and torch.cuda.is_available(), C.cuda_status()
\""
fi

# ---------------------------------------------------------------- 3. ctest
if want ctest; then
  step "ctest (test_cuda: DRDC_REQUIRE_CUDA=$DRDC_REQUIRE_CUDA)" 120 \
    ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 100
fi

# ---------------------------------------------------------------- 4. GPU-marked pytest
if want pytest; then
  PYTEST=("$PY" -P -m pytest -p no:cacheprovider -q -rs -m "gpu and not slow")
  if ! step "pytest -m gpu (DRDC_REQUIRE_CUDA=$DRDC_REQUIRE_CUDA)" 240 "${PYTEST[@]}" \
      --ignore=tests/integration/test_csrc_cmake_build.py --continue-on-collection-errors \
      --junitxml="$RESULTS/pytest_gpu.xml" tests; then
    # A kernel fault leaves the process's CUDA context unusable: every later test fails too.
    # Each file with a failure runs again in its own process to show where the fault is.
    for f in $("$PY" -m drdc_trt.gpu_results failed-files "$RESULTS/pytest_gpu.xml" 2>> "$LOG" | head -8); do
      step "pytest -m gpu $f, own process" 60 "${PYTEST[@]}" --junitxml="$RESULTS/pytest_gpu_$(basename "$f" .py).xml" "$f"
    done
  fi
fi

# ---------------------------------------------------------------- 4b. compute-sanitizer
# test_cuda under memcheck (out-of-bounds and misaligned accesses, leaks) and racecheck
# (shared-memory hazards of the reductions): a kernel can read past its buffer and still
# give the CPU's bits. Not in the dry run (no GPU: test_cuda would skip).
if want sanitize; then
  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ $DRY = 1 ] || [ -z "$SAN" ]; then
    why=$([ $DRY = 1 ] && echo "dry run: no GPU" || echo "compute-sanitizer not found")
    log "== compute-sanitizer: not run ($why)"; printf 'compute-sanitizer\tnot run (%s)\t0\n' "$why" >> "$STEPS"
  else
    step "compute-sanitizer memcheck (test_cuda)" 90 "$SAN" --tool memcheck --leak-check full --error-exitcode 1 \
      "$BUILD_DIR/csrc/tests/test_cuda"
    step "compute-sanitizer racecheck (test_cuda)" 60 "$SAN" --tool racecheck --error-exitcode 1 \
      "$BUILD_DIR/csrc/tests/test_cuda"
  fi
fi

# ---------------------------------------------------------------- 5. drdc-bench
if want bench; then
  BENCH_BUDGET=$(($(left) - 90))   # rows not started by then are listed as 'not run'
  [ $BENCH_BUDGET -lt 30 ] && BENCH_BUDGET=30
  if [ $DRY = 1 ]; then
    BENCH=(--device cpu --config tiny --batch 1,2 --precision float32 --threads 1 --warmup-s 0 --min-iters 2
           --max-seconds 0.3)
  else
    BENCH=(--device cuda --config fast --batch 1,8,32 --precision float32,bfloat16 --warmup-s 1 --min-iters 3
           --max-seconds 1.5)
  fi
  step "drdc-bench ($DEVICE)" $((BENCH_BUDGET + 75)) "$PY" -m drdc_trt.bench "${BENCH[@]}" \
    --backends torch,torch-compiled --loop torch,csrc --budget-s "$BENCH_BUDGET" --out "$RESULTS" --date "$DATE"
fi

# ---------------------------------------------------------------- 6. pack into $OUT
log "total ${SECONDS}s; status $status; packing"
"$PY" -m drdc_trt.gpu_results pack "$RESULTS" "$PACK_TO" --name "$NAME" --device "$DEVICE" --steps "$STEPS" \
  --command "bash scripts/gpu_check.sh${1:+ $1}" $([ $DRY = 1 ] && echo --dry-run) 2>&1 | tee -a "$LOG" ||
  { echo "[gpu_check] packing failed" >&2; status=1; }
cat "$STEPS"
exit $status
