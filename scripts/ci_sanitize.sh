#!/usr/bin/env bash
# The C++ core under AddressSanitizer + UndefinedBehaviorSanitizer (CMake option DRDC_SANITIZE,
# CPU only): builds the ctest executables and the example host in their own build folder and runs
# ctest — the kernel and refiner tests, the example host's CPU refiner run end to end, and the
# JSON reader fuzzer (csrc/tests/fuzz_json_lite.cpp). Fails on a failed test and on any sanitizer
# report (every report aborts its process; the logs are searched as well).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DRDC_SANITIZE_BUILD:-build/sanitize}
jobs=${DRDC_BUILD_JOBS:-2}

cmake -S . -B "$build" -DDRDC_SANITIZE=ON -DDRDC_ENABLE_CUDA=OFF -DDRDC_WITH_TENSORRT=OFF \
  -DDRDC_BUILD_TESTS=ON -DDRDC_BUILD_EXAMPLES=ON -DDRDC_BUILD_PYTHON=OFF -DDRDC_INSTALL_PACKAGE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$jobs"

export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log="$build/Testing/Temporary/LastTest.log"
(cd "$build" && ctest --output-on-failure --timeout 600)

for name in test_core test_refiner example_analytic_cpu fuzz_json_lite; do
  grep -q "^[0-9]*/[0-9]* Test: $name\$" "$log" || { echo "ci_sanitize: $name did not run" >&2; exit 1; }
done
if grep -Eq "runtime error:|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer" "$log"; then
  echo "ci_sanitize: sanitizer report in $log" >&2
  exit 1
fi
grep -h "^fuzz_json_lite:" "$log"
echo "ci_sanitize: all C++ tests passed under ASan + UBSan"
