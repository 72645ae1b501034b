#!/usr/bin/env bash
# The documentation site: Sphinx with numpydoc and the PyData theme, the API reference from
# the docstrings, and the example gallery (sphinx-gallery runs every script in examples/ and
# shows its output and figures). Every warning is an error (-W); --keep-going reports them
# all before failing. The HTML lands in docs/_build/html (open docs/_build/html/index.html).
#
#   pip install ".[docs]"              # Sphinx, numpydoc, the theme, sphinx-gallery, ...
#   bash tools/build_docs.sh           # every page re-read (-E); examples rerun when changed
#   bash tools/build_docs.sh --clean   # from scratch: the HTML, the gallery and the API stubs
#   bash tools/build_docs.sh --quick   # the examples train less (FASTMLP_DOCS_QUICK=1): faster,
#                                      # but their numbers fall short of the pages' text
#   bash tools/build_docs.sh -- -j 2   # anything after -- goes to sphinx-build
#
# Environment: SPHINXBUILD (default sphinx-build). A from-scratch build takes about 20 s
# on a 2-core machine, the two examples about 7 s of it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
sphinx_build="${SPHINXBUILD:-sphinx-build}"
clean=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --clean) clean=1 ;;
    --quick) export FASTMLP_DOCS_QUICK=1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build_docs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v "$sphinx_build" >/dev/null 2>&1; then
  echo "build_docs.sh: $sphinx_build not found; install the docs extra: pip install \".[docs]\"" >&2
  exit 2
fi

if [ "$clean" = 1 ]; then
  # everything docs/.gitignore lists: made by the build
  rm -rf docs/_build docs/auto_examples docs/api/generated docs/sg_execution_times.rst
fi

# sphinx-gallery reruns an example only when its file changed: after a --quick build (or
# before one) the gallery is made again, so that its output matches the mode asked for
mode=full
[ -n "${FASTMLP_DOCS_QUICK:-}" ] && [ "${FASTMLP_DOCS_QUICK}" != 0 ] && mode=quick
stamp=docs/_build/gallery_mode
if [ -d docs/auto_examples ] && [ "$(cat "$stamp" 2>/dev/null || true)" != "$mode" ]; then
  rm -rf docs/auto_examples
fi
mkdir -p docs/_build
echo "$mode" > "$stamp"

export MPLBACKEND=Agg  # the examples draw into files; sphinx-gallery collects the figures
start=$(date +%s.%N)
status=0
# -E: read every page again, so that a warning in an unchanged page is reported again
"$sphinx_build" -W --keep-going -E -b html docs docs/_build/html ${extra[@]+"${extra[@]}"} \
  || status=$?
seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
if [ "$status" = 0 ]; then
  echo "build_docs.sh: docs/_build/html built in ${seconds} s, no warnings"
else
  echo "build_docs.sh: FAILED after ${seconds} s (sphinx-build exit status $status)" >&2
fi
exit "$status"
