"""Sphinx configuration of fastmlp's documentation site.

Build it with ``bash tools/build_docs.sh`` (``sphinx-build -W --keep-going -b html docs
docs/_build/html``): every warning is an error. The gallery (``auto_examples/``) is made
from ``../examples/`` by sphinx-gallery, which runs every example and shows its figures;
the API pages (``api/generated/``) are made by autosummary from the docstrings, which
numpydoc renders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fastmlp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _gallery_hooks (sphinx-gallery's reset_argv)

# -- project ---------------------------------------------------------------------------

project = "fastmlp"
author = "the fastmlp developers"
copyright = "the fastmlp developers, BSD-3-Clause"  # noqa: A001 (Sphinx's name)
release = fastmlp.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
# sphinx-gallery 0.17 reads examples/GALLERY_HEADER.rst and takes callables in its
# configuration as importable names (a function object cannot be pickled by Sphinx)
needs_sphinx = "7.0"
needs_extensions = {"sphinx_gallery.gen_gallery": "0.17"}

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
default_role = "literal"  # `x` in a docstring is code, as the docstrings mean it

# -- autodoc, autosummary, numpydoc ----------------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_preserve_defaults = True  # signatures show dtype=np.float64, not <class ...>
autodoc_member_order = "bysource"
add_module_names = False

numpydoc_show_class_members = False  # the class template documents the members instead
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
# What numpydoc checks in every docstring the API reference shows (a failure is a warning,
# so an error here): a docstring at all (GL08: the class template lists undocumented
# methods and properties too), a summary (SS01), every parameter documented (PR01) and no
# unknown one (PR02), a Returns (RT01) or Yields (YD01) section where something is returned,
# known sections in the standard order (GL06, GL07) and "name : type" spacing (PR10).
numpydoc_validation_checks = {"GL06", "GL07", "GL08", "PR01", "PR02", "PR10", "RT01",
                              "SS01", "YD01"}
numpydoc_validation_exclude = {
    r"\.__init__$",  # the constructor is documented in the class docstring
}


def _skip_member(app, what, name, obj, skip, options):
    """Document a class's methods and properties, not its data: dataclass fields and class
    constants are described in the class docstring's Parameters / Attributes. What the
    scikit-learn drop-ins inherit from scikit-learn (score, get_params, the metadata
    routing's set_fit_request, ...) is documented by scikit-learn."""
    if what != "class" or skip:
        return skip
    if name.startswith("set_") and name.endswith("_request"):
        return True
    if getattr(obj, "__module__", "").partition(".")[0] == "sklearn":
        return True  # inherited from scikit-learn (score, get_metadata_routing): its docs
    if isinstance(obj, property) or callable(obj) or isinstance(obj, (classmethod,
                                                                      staticmethod)):
        return None
    return True  # a data attribute


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)


# -- HTML ------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"fastmlp {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 5,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": []}  # the home page: no section navigation
html_show_sourcelink = True
html_copy_source = True

# -- the gallery -----------------------------------------------------------------------

# Examples draw with Agg (no display): sphinx-gallery collects every figure left open at
# the end of each code cell.
os.environ.setdefault("MPLBACKEND", "Agg")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # every .py file in examples/ is an example to run (not only plot_*.py)
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    # "Examples using X" on each API page (the minigallery in _templates/autosummary)
    "doc_module": ("fastmlp",),
    "backreferences_dir": "api/generated/backreferences",
    # a notebook made from an example runs it with its defaults (no command line)
    "first_notebook_cell": "import sys\n\nsys.argv = sys.argv[:1]  # the example's defaults",
    # the command line each example runs with: its figures go to the build directory,
    # and FASTMLP_DOCS_QUICK=1 shortens the training (tools/build_docs.sh --quick)
    "reset_argv": "_gallery_hooks.reset_argv",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "show_signature": False,
    "min_reported_time": 0,
    "write_computation_times": True,
}
