"""sphinx-gallery's hooks, importable by name (Sphinx can only cache picklable settings).

reset_argv gives each example the command line it runs with in the gallery:
``--out docs/_build/gallery_output`` (the PNG files an example writes go to the build
directory, not next to the script), and with ``FASTMLP_DOCS_QUICK=1`` a shorter training
(``tools/build_docs.sh --quick``); the figures the gallery shows are the ones the
example leaves open.
"""

from __future__ import annotations

import os
from pathlib import Path

OUT = Path(__file__).resolve().parent / "_build" / "gallery_output"

# the shorter runs of FASTMLP_DOCS_QUICK=1, per example script
QUICK = {
    "spiral_tutorial.py": ["--steps", "1000"],
    "mnist_lecture.py": ["--epochs", "5"],
    "autoencoder.py": ["--epochs", "3"],
    "hyperparameter_search.py": ["--trials", "4", "--epochs", "2"],
}


def reset_argv(gallery_conf, script_vars):
    """The arguments after the script's name (sys.argv[1:]) for one gallery example."""
    name = Path(script_vars["src_file"]).name
    argv = ["--out", str(OUT)]
    if os.environ.get("FASTMLP_DOCS_QUICK", "").strip() not in ("", "0"):
        argv += QUICK.get(name, [])
    return argv
