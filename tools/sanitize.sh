#!/usr/bin/env bash
# Memory-safety run: build fastmlp with FASTMLP_SANITIZE=ON (AddressSanitizer + UBSan on the
# C core and the Cython module, Cython bounds checks) into a virtual environment of its own,
# then run the kernel tests under the sanitizers. Fails on a test failure *or* on any
# sanitizer report ($FASTMLP_SANITIZE_DIR/sanitizer-report.*; UBSan halts at the first).
# Two canaries first prove that ASan and the Cython bounds checks are live.
#
#   tools/sanitize.sh          # the kernel, plan, property and thread tests: ~6 min
#   tools/sanitize.sh --ci     # the C backend's kernel and plan tests only: ~1.5 min
#                              # (with a fresh build; ~35 s of tests)
#   tools/sanitize.sh tests/test_dense.py -k relu     # any pytest arguments
#   tools/sanitize.sh --thread [pytest arguments]     # ThreadSanitizer instead, in a build
#                              # of its own (default ./venv-tsan): the threaded tests
#
# Environment: PYTHON (default python3; it must have numpy, scipy, pytest and hypothesis,
# as a venv with fastmlp's test extras does), FASTMLP_SANITIZE_DIR (default ./venv-sanitize
# or ./venv-tsan, ignored by git), HYPOTHESIS_PROFILE (default ci), KEEP_BUILD=1 to reuse the CMake build.
#
# Notes
# - The virtual environment sees the interpreter's site-packages (numpy, scipy, numba,
#   pytest, hypothesis) as a plain path in a .pth file, so their own .pth files do not run:
#   one of them is the editable install's import hook, which would load the normal build
#   of fastmlp instead of the sanitized one.
# - libasan must be loaded before anything else in the process (python itself is not
#   instrumented): LD_PRELOAD. detect_leaks=0: the interpreter keeps allocations alive
#   until exit by design. allocator_may_return_null=1: an absurd allocation returns NULL
#   (NumPy raises MemoryError) instead of ASan aborting the process.
# - PYTHONMALLOC=malloc routes Python's small objects through malloc too, so ASan's red
#   zones surround them as well.
# - ThreadSanitizer sees the C core's memory accesses and every pthread lock, condition and
#   atomic; Python, NumPy and OpenBLAS are not instrumented, so a race can only be reported
#   between two accesses of fastmlp's own code (the pool, the blocks, the tiles).
#   die_after_fork=0: the fork test starts the pool again in the child, which TSan
#   refuses by default. A planted race in the C core (two blocks writing one gradient
#   copy) gave 90 reports.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
start=$(date +%s)
mode=address
if [ "${1:-}" = "--thread" ]; then
  mode=thread
  shift
fi
if [ "$mode" = thread ]; then
  out="${FASTMLP_SANITIZE_DIR:-$root/venv-tsan}"
  runtime=libtsan.so cmake_value=thread flags="-fsanitize=thread"
else
  out="${FASTMLP_SANITIZE_DIR:-$root/venv-sanitize}"
  runtime=libasan.so cmake_value=ON flags="-fsanitize=address,undefined"
fi

TESTS=(
  tests/test_activations.py tests/test_dense.py tests/test_losses.py
  tests/test_optimizers.py tests/test_gradients.py tests/test_stability.py
  tests/test_validation.py tests/test_backends.py tests/test_plan.py tests/test_memory.py
  tests/test_properties.py tests/test_threads.py tests/test_pool.py tests/test_maxout.py
)
if [ "${1:-}" = "--ci" ]; then
  # Numba's JIT compiles slowly under ASan (and its code is not instrumented anyway)
  TESTS=(tests/test_dense.py tests/test_activations.py tests/test_losses.py
         tests/test_optimizers.py tests/test_gradients.py tests/test_stability.py
         tests/test_validation.py tests/test_plan.py tests/test_pool.py tests/test_maxout.py
         -k "not numba")
elif [ "$#" -gt 0 ]; then
  TESTS=("$@")
elif [ "$mode" = thread ]; then
  TESTS=(tests/test_pool.py tests/test_threads.py tests/test_gil.py tests/test_maxout.py
         -k "not numba")
fi

library="$(gcc -print-file-name=$runtime)"
if [ ! -e "$library" ]; then
  echo "sanitize.sh: $runtime not found (gcc -print-file-name=$runtime gave '$library')" >&2
  exit 2
fi

echo "== virtual environment: $out"
if [ ! -x "$out/bin/python" ]; then
  "$python" -m venv --without-pip "$out"
fi
venv_python="$out/bin/python"
site="$("$venv_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$python" -c 'import site; print("\n".join(site.getsitepackages()))' \
  > "$site/_fastmlp_system_site_packages.pth"

echo "== building the sanitized wheel (FASTMLP_SANITIZE=$cmake_value)"
if [ "${KEEP_BUILD:-0}" != 1 ]; then rm -rf "$out/build"; fi
rm -rf "$out/dist"
# the build requirements from $python when it has them (offline, fast), else pip fetches them
isolation=()
if "$python" -c 'import scikit_build_core, Cython' 2>/dev/null; then
  isolation=(--no-build-isolation)
fi
"$python" -m pip wheel --quiet "${isolation[@]}" --no-deps --wheel-dir "$out/dist" \
  -Ccmake.define.FASTMLP_SANITIZE=$cmake_value -Cbuild-dir="$out/build" "$root"
wheel="$(ls "$out"/dist/fastmlp-*.whl)"
grep -q -- "$flags" "$out/build/build.ninja" \
  || { echo "sanitize.sh: the build did not use $flags" >&2; exit 2; }
if [ "$mode" = address ]; then
  grep -q "boundscheck=True" "$out/build/build.ninja" \
    || { echo "sanitize.sh: Cython bounds checks are off" >&2; exit 2; }
fi

echo "== installing $(basename "$wheel") into the virtual environment"
rm -rf "$site/fastmlp" "$site"/fastmlp-*.dist-info
"$venv_python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
  "$wheel" "$site"
built=$(( $(date +%s) - start ))

# Sanitizer reports go to files of their own: pytest captures the tests' stderr, and a
# report that halts the process would be lost with the capture.
reports_prefix="$out/sanitizer-report"
rm -f "$reports_prefix".*
sanitized_env=(env -u PYTHONPATH LD_PRELOAD="$library"
  ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:log_path=$reports_prefix"
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports_prefix"
  TSAN_OPTIONS="log_path=$reports_prefix:report_signal_unsafe=0:die_after_fork=0:suppressions=$root/tools/tsan.supp")
if [ "$mode" = thread ]; then
  sanitized_env+=(OPENBLAS_NUM_THREADS=1)
fi
cd "$root"

if [ "$mode" = thread ]; then
  echo "== canary: ThreadSanitizer reports a race (two threads, one unlocked counter)"
  # Two pthreads of the library's own: nothing orders them, however the machine schedules
  # them (two Python threads would be ordered by the GIL if one ran after the other).
  cat > "$out/race.c" <<'RACE'
#include <pthread.h>
long counter;
static void *bump(void *unused) { for (long i = 0; i < 100000; ++i) counter++; return unused; }
void race(void) {
  pthread_t a, b;
  pthread_create(&a, 0, bump, 0);
  pthread_create(&b, 0, bump, 0);
  pthread_join(a, 0);
  pthread_join(b, 0);
}
RACE
  gcc -shared -fPIC -fsanitize=thread -O1 -g "$out/race.c" -o "$out/race.so" -lpthread
  "${sanitized_env[@]}" "$venv_python" -c '
import ctypes, sys
ctypes.CDLL(sys.argv[1]).race()' "$out/race.so" || true  # it exits 66 after a report
  grep -qs "WARNING: ThreadSanitizer: data race" "$reports_prefix".* \
    || { echo "sanitize.sh: ThreadSanitizer did not report the canary's race" >&2; exit 2; }
  rm -f "$reports_prefix".*
else
echo "== canaries: the sanitizers and the bounds checks are live"
# an out-of-bounds read through the internal gemm (it trusts its caller's shapes)
if "${sanitized_env[@]}" "$venv_python" -c '
import numpy as np
from fastmlp.backends import _c_kernels as c
c.set_small_gemm_flops(10**9)
c.gemm(np.ones((2, 64)), np.ones((1, 2)), np.empty((2, 2)))' >/dev/null 2>&1; then
  echo "sanitize.sh: an out-of-bounds read went unnoticed: ASan is not active" >&2; exit 2
fi
grep -qs "heap-buffer-overflow" "$reports_prefix".* \
  || { echo "sanitize.sh: ASan did not report the canary's overflow" >&2; exit 2; }
rm -f "$reports_prefix".*
"${sanitized_env[@]}" "$venv_python" -c '
import numpy as np
from fastmlp.backends import _c_kernels as c
try:
    c.softmax(np.zeros((0, 3)), False, np.zeros((0, 3)))
except IndexError:
    pass
else:
    raise SystemExit("Cython bounds checks are off")'
fi

echo "== running under the $mode sanitizer: ${TESTS[*]}"
log="$out/pytest.log"
set +e
"${sanitized_env[@]}" \
  PYTHONMALLOC="${PYTHONMALLOC:-malloc}" \
  HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" \
  SANITIZED_SITE="$site" \
  "$venv_python" - "${TESTS[@]}" <<'EOF' 2>&1 | tee "$log"
import os
import sys

import fastmlp.backends._c_kernels as c

assert c.__file__.startswith(os.environ["SANITIZED_SITE"]), f"not the sanitized build: {c.__file__}"
print("sanitized extension:", c.__file__, flush=True)
import pytest

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
                      *sys.argv[1:]]))
EOF
status=${PIPESTATUS[0]}
set -e
total=$(( $(date +%s) - start ))

reports=$(cat "$reports_prefix".* 2>/dev/null | grep -cE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior|Thread)Sanitizer|WARNING: ThreadSanitizer" || true)
echo "== build ${built}s, total ${total}s; pytest exit status $status; sanitizer reports: $reports"
if [ "$reports" != 0 ]; then
  echo "sanitize.sh: sanitizer reports ($reports_prefix.*):" >&2
  head -n 40 "$reports_prefix".* >&2
  exit 1
fi
exit "$status"
