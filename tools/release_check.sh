#!/usr/bin/env bash
# Release check: build the sdist and the wheel as a release does, check both, and test the
# installed wheel. Exits non-zero on any problem; about 2 min on 2 cores with a warm pip
# cache (a cold one downloads about 120 MB more: NumPy, SciPy, Numba, scikit-learn).
#
#   tools/release_check.sh              # the committed tree (HEAD), not the working tree
#   tools/release_check.sh --worktree   # the working tree: tracked files and untracked ones
#                                       # git does not ignore, as `git add -A` would take
#
# 1. The tree goes to a temporary directory (`git archive HEAD`, or a copy of the working
#    tree), and junk is planted in it: virtual environments, build directories, caches,
#    compiled modules, a large file. None of it may reach the sdist.
# 2. `python -m build`: the sdist, then the wheel built from the unpacked sdist.
# 3. `twine check --strict`; the sdist holds only files of the tree, and all of csrc/,
#    src/fastmlp/, tests/ and the license files; the wheel holds the compiled extension,
#    the package with its data and both license files in its .dist-info/licenses/;
#    `auditwheel show` reports the platform tag and the libraries a manylinux wheel
#    would have to vendor (a plain linux_x86_64 tag is expected here and is not an error).
# 4. A fresh virtual environment outside the tree gets the wheel with its test extras, and
#    a subset of the tests, copied from the sdist into an empty directory, runs against
#    the installed package (checked: fastmlp is imported from site-packages, with the C
#    backend).
#
# Environment: PYTHON (default python3: the interpreter of the build and of the test
# environment), RELEASE_CHECK_KEEP=1 keeps the temporary directory (artifacts, logs,
# virtual environments) and prints its path.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
source_kind=committed
source_label="the committed tree"
case "${1:-}" in
  "") ;;
  --worktree) source_kind=worktree source_label="the working tree" ;;
  *) echo "usage: tools/release_check.sh [--worktree]" >&2; exit 2 ;;
esac

# The representative subset (~50 s): every backend imports, the kernels and their
# gradients, training end to end, the files, the threads and the GIL, and the MNIST package
# data with its checksums and attribution. Numba's backend runs only in test_dense.py:
# in a fresh environment each Numba kernel compiles at its first call, about 90 s more for
# the rest (its plans most of it). The slow suites (test_plan, test_checkpoint, test_sklearn,
# test_soak) stay with CI's full run.
SELECT="not numba or test_dense"
TESTS=(
  tests/test_backends.py tests/test_datasets.py tests/test_dense.py
  tests/test_activations.py tests/test_losses.py tests/test_optimizers.py
  tests/test_gradients.py tests/test_stability.py tests/test_nan_policy.py
  tests/test_validation.py tests/test_spiral.py tests/test_model.py tests/test_files.py
  tests/test_threads.py tests/test_gil.py
)
# what must travel with every artifact; pyproject.toml's license-files names the same
LICENSE_FILES=(LICENSE LICENSES/MNIST-CC-BY-SA-3.0.txt)

start=$(date +%s)
work="$(mktemp -d "${TMPDIR:-/tmp}/fastmlp-release-check.XXXXXX")"
logs="$work/logs"
mkdir -p "$logs"
step="setup"
finish() {
  local status=$?
  if [ "$status" != 0 ]; then
    echo "release_check.sh: FAILED at: $step (logs: $logs)" >&2
  fi
  if [ "${RELEASE_CHECK_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
    echo "release_check.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap finish EXIT

# Runs a command with its output in $logs/NAME.log; on failure shows the log's end.
logged() {
  local name="$1"
  shift
  if ! "$@" >"$logs/$name.log" 2>&1; then
    echo "---- last lines of $logs/$name.log" >&2
    tail -n 40 "$logs/$name.log" >&2
    return 1
  fi
}

step="copying $source_label"
echo "== $step"
src="$work/src"
mkdir -p "$src"
revision="$(git -C "$root" rev-parse --short HEAD)"
if [ "$source_kind" = committed ]; then
  git -C "$root" archive --format=tar HEAD | tar -x -C "$src"
else
  # files deleted in the working tree but still in the index are skipped, as git add -A would
  git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -x -C "$src"
  revision="$revision + working tree"
fi
(cd "$src" && find . -type f | sed 's|^\./||' | sort) > "$work/tree-files.txt"
echo "   $(wc -l < "$work/tree-files.txt") files ($revision)"

# The junk the sdist once swallowed (57 MB of .venv/), and its relatives.
junk=(
  .venv/lib/python3/site-packages/junk/__init__.py .venv/pyvenv.cfg
  venv/bin/activate venv-tsan/lib/site.py env/junk.py .tox/py311/junk.txt
  build/cp311/CMakeCache.txt build/cp311/_c_kernels.c _skbuild/junk.txt dist/old.whl
  .hypothesis/examples/junk .benchmarks/Linux-CPython-3.11/0001_junk.json
  .pytest_cache/v/cache/lastfailed .ruff_cache/junk
  src/fastmlp/__pycache__/model.cpython-311.pyc tests/__pycache__/conftest.cpython-311.pyc
  src/fastmlp/backends/_c_kernels.cpython-311-x86_64-linux-gnu.so
  src/fastmlp/backends/_c_kernels.c csrc/real_f32.o
  big-random.bin
)
for path in "${junk[@]}"; do
  mkdir -p "$src/$(dirname "$path")"
  echo "planted by tools/release_check.sh" > "$src/$path"
done
head -c 8000000 /dev/urandom > "$src/big-random.bin"
printf '%s\n' "${junk[@]}" > "$work/junk-files.txt"
echo "   planted ${#junk[@]} junk files (venvs, build dirs, caches, compiled modules, 8 MB)"

step="tools (build, twine, auditwheel) in a virtual environment"
echo "== $step"
"$python" -m venv "$work/tools"
tools_python="$work/tools/bin/python"
logged pip-tools "$tools_python" -m pip install "build>=1" "twine>=6.1" "auditwheel>=6"

step="building the sdist, then the wheel from the sdist"
echo "== $step"
build_start=$(date +%s)
dist="$work/dist"
logged build "$tools_python" -m build --outdir "$dist" "$src"
sdist="$(ls "$dist"/fastmlp-*.tar.gz)"
wheel="$(ls "$dist"/fastmlp-*.whl)"
echo "   $(basename "$sdist"), $(basename "$wheel") in $(( $(date +%s) - build_start )) s"

step="twine check"
echo "== $step"
COLUMNS=200 "$tools_python" -m twine --no-color check --strict "$sdist" "$wheel" \
  | sed -e "s|$dist/||" -e 's/^/   /'

step="the artifacts' contents"
echo "== $step"
"$tools_python" - "$sdist" "$wheel" "$src" "$work" "${LICENSE_FILES[@]}" <<'EOF'
import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path

sdist, wheel, src, work = (Path(a) for a in sys.argv[1:5])
license_files = sys.argv[5:]
tree = set((work / "tree-files.txt").read_text().split("\n")) - {""}
junk = (work / "junk-files.txt").read_text().split()
problems = []


def metadata_problems(kind, text):
    """The PEP 639 fields: the SPDX expression names both licenses, both files listed."""
    headers = email.parser.Parser().parsestr(text)
    expression = headers.get("License-Expression") or ""
    found = []
    for spdx in ("BSD-3-Clause", "CC-BY-SA-3.0"):
        if spdx not in expression:
            found.append(f"{kind}: License-Expression {expression!r} lacks {spdx}")
    listed = headers.get_all("License-File") or []
    found += [f"{kind}: no License-File: {f}" for f in license_files if f not in listed]
    return found


# sdist: what the tree has under these, all of it; nothing that is not the tree's
with tarfile.open(sdist) as tar:
    top = sdist.name[: -len(".tar.gz")] + "/"
    members = [m for m in tar.getmembers() if m.isfile()]
    outside = [m.name for m in members if not m.name.startswith(top)]
    problems += [f"sdist: {name} is outside {top}" for name in outside]
    sdist_files = {m.name[len(top):] for m in members}
    pkg_info = tar.extractfile(top + "PKG-INFO").read().decode()
problems += metadata_problems("sdist PKG-INFO", pkg_info)
for name in sorted(sdist_files - tree - {"PKG-INFO"}):
    problems.append(f"sdist: {name} is not a file of the source tree")
planted = [name for name in junk if name in sdist_files]
problems += [f"sdist: planted junk {name} got in" for name in planted]
required = {"pyproject.toml", "CMakeLists.txt", "README.md", "tools/soak.py", *license_files}
required |= {f for f in tree if f.startswith(("csrc/", "src/fastmlp/", "tests/"))}
problems += [f"sdist: {name} is missing" for name in sorted(required - sdist_files)]

# wheel: the compiled extension, the package as the sdist has it, the licenses; nothing else
with zipfile.ZipFile(wheel) as whl:
    wheel_files = set(whl.namelist())
    dist_info = next(n.split("/")[0] for n in wheel_files if n.endswith(".dist-info/METADATA"))
    metadata = whl.read(f"{dist_info}/METADATA").decode()
    for name in license_files:
        packed = f"{dist_info}/licenses/{name}"
        if packed not in wheel_files:
            problems.append(f"wheel: {packed} is missing")
        elif whl.read(packed) != (src / name).read_bytes():
            problems.append(f"wheel: {packed} differs from the tree's {name}")
problems += metadata_problems("wheel METADATA", metadata)
extensions = [n for n in wheel_files
              if n.startswith("fastmlp/backends/_c_kernels.") and n.endswith((".so", ".pyd"))]
if len(extensions) != 1:
    problems.append(f"wheel: {len(extensions)} compiled _c_kernels modules: {extensions}")
package = {"fastmlp/" + f[len("src/fastmlp/"):] for f in sdist_files
           if f.startswith("src/fastmlp/")}
problems += [f"wheel: {name} is missing" for name in sorted(package - wheel_files)]
for name in sorted(wheel_files - package - set(extensions)):
    if not name.startswith(dist_info + "/"):
        problems.append(f"wheel: {name} is not a file of the package")

for line in problems:
    print("  PROBLEM", line)
print(f"   sdist: {len(sdist_files)} files, none of the {len(junk)} planted"
      if not planted else f"   sdist: {len(sdist_files)} files")
print(f"   wheel: {len(wheel_files)} files; {extensions[0] if extensions else 'no extension'};"
      f" licenses: {', '.join(license_files)}")
(work / "counts.txt").write_text(f"{len(sdist_files)} {len(wheel_files)}\n")
sys.exit(1 if problems else 0)
EOF
read -r sdist_count wheel_count < "$work/counts.txt"

step="auditwheel show"
echo "== $step"
"$work/tools/bin/auditwheel" -v show "$wheel" 2>"$logs/auditwheel.err" | tee "$logs/auditwheel.log" \
  | sed -e '/^$/d' -e 's/^/   /'
wheel_name="$(basename "$wheel" .whl)"
tag="${wheel_name#fastmlp-*-}"
# auditwheel wraps its sentences: join the lines before looking for the tag
report="$(tr '\n' ' ' < "$logs/auditwheel.log")"
manylinux="$(grep -o 'platform tag: *"[^"]*"' <<<"$report" | head -n 1 | cut -d'"' -f2 || true)"
if [ -z "$manylinux" ]; then
  echo "   auditwheel finds no manylinux tag for this wheel: a manylinux release needs the"
  echo "   cibuildwheel build (pyproject.toml, [tool.cibuildwheel])"
  manylinux="none"
else
  if grep -q "requires no external shared libraries" <<<"$report"; then
    vendored="nothing to vendor"
  else
    vendored="it would vendor the external libraries listed above"
  fi
  glibc="$(sed -E 's/^manylinux_([0-9]+)_([0-9]+)_.*/\1.\2/' <<<"$manylinux")"
  echo "   a manylinux repair: auditwheel repair --plat $manylinux ($vendored);"
  echo "   the glibc symbols of this machine's build set that floor (glibc $glibc or later);"
  echo "   release wheels come from cibuildwheel's manylinux_2_28 images (glibc 2.28) instead"
fi

step="installing the wheel with its test extras in a fresh virtual environment"
echo "== $step"
"$python" -m venv "$work/venv-test"
test_python="$work/venv-test/bin/python"
logged pip-test "$test_python" -m pip install "$wheel[test]"

step="the tests against the installed wheel"
echo "== $step"
run="$work/run"
mkdir -p "$run"
tar -xzf "$sdist" -C "$work"
cp -r "$work/$(basename "$sdist" .tar.gz)/tests" "$run/tests"
cd "$run"
env -u PYTHONPATH -u FASTMLP_BACKEND -u FASTMLP_SIMD \
  "$test_python" - "$work/junit.xml" "$SELECT" "${TESTS[@]}" <<'EOF'
import os
import sys
import sysconfig

import fastmlp
from fastmlp.backends import _c_kernels

site = sysconfig.get_paths()["platlib"]
for module in (fastmlp, _c_kernels):
    if not module.__file__.startswith(site + os.sep):
        sys.exit(f"{module.__name__} is not the installed wheel's: {module.__file__}")
if fastmlp.get_backend() != "c":
    sys.exit(f"the default backend is {fastmlp.get_backend()!r}, not the compiled 'c'")
print(f"   fastmlp from {os.path.dirname(fastmlp.__file__)}")
print(f"   backends: {', '.join(fastmlp.available_backends())}; SIMD: {_c_kernels.simd_level()}",
      flush=True)
import pytest

junit, select, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "-k", select,
                      *tests]))
EOF
tests_summary="$("$tools_python" - "$work/junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
count = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
print(f"{passed} passed, {count['failures'] + count['errors']} failed,"
      f" {count['skipped']} skipped")
EOF
)"

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
sdist_bytes=$(stat -c %s "$sdist")
wheel_bytes=$(stat -c %s "$wheel")
step="done"
echo
echo "== release check summary ($revision, $(( $(date +%s) - start )) s)"
echo "sdist  $(basename "$sdist"): $(human "$sdist_bytes") ($sdist_bytes bytes), $sdist_count files"
echo "wheel  $(basename "$wheel"): $(human "$wheel_bytes") ($wheel_bytes bytes), $wheel_count files"
echo "tag    $tag (auditwheel: consistent with $manylinux)"
echo "tests  $tests_summary (${#TESTS[@]} test files, -k '$SELECT', against the installed wheel)"
