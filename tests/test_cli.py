"""The command line, ``python -m fastmlp``: --help, the config command, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_help_lists_the_commands():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "config" in result.stdout


def test_config_names_the_blas_of_gemm_and_the_variables_set_or_not():
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "FASTMLP_NUMBA_QUIET")}
    env["FASTMLP_NUM_THREADS"] = "1"
    result = _run("config", env=env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" : ", 1) for line in result.stdout.splitlines() if " : " in line)
    lines = {k.strip(): v for k, v in lines.items()}
    pytest.importorskip("threadpoolctl")
    gemm = lines["gemm calls"].split(" (")[0]
    assert os.path.exists(gemm)
    # threadpoolctl's entry for that very library says it is gemm's
    assert any(v.endswith("<- fastmlp's gemm") for k, v in lines.items()
               if k.startswith("blas (") and os.path.basename(gemm) in k)
    assert lines["OPENBLAS_CORETYPE"].startswith("(unset)")
    assert lines["FASTMLP_NUM_THREADS"].startswith("1 ")
    assert lines["FASTMLP_NUMBA_QUIET"].startswith("(unset)")


def test_an_unknown_command_is_a_usage_error():
    result = _run("bogus")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
