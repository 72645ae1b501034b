"""Argument checks shared by every backend: nothing reaches a kernel unchecked.

Policy (see README, "Input rules"):
- arrays must be float32 or float64 (TypeError otherwise, no silent cast of integers);
  all float inputs of one call share one dtype (TypeError on a mix);
- non-contiguous, Fortran-ordered or misaligned inputs are copied to aligned C order,
  never modified (the kernels load whole elements: a misaligned load is undefined
  behaviour in C, caught by tools/sanitize.sh);
- `out=` and in-place arguments must already be C-contiguous, aligned, writeable, of the
  exact shape and dtype (they cannot be copied without losing the write);
- class labels must be integers in [0, n_classes);
- NaN and inf are not searched for in the kernels (a full pass per call); they
  propagate to the outputs and the loss and never turn into plausible numbers.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fastmlp._registry import (
    ACTIVATION_ALIASES,
    ACTIVATIONS,
    ACTIVATIONS_WITH_ALPHA,
    LOSS_ALIASES,
    LOSSES,
    MAX_PIECES,
)

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT32_MAX = 2**31 - 1


def float_array(a, name, ndim=None):
    """`a` as a C-contiguous float32/float64 array (copied only when it has to be)."""
    arr = np.asarray(a)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}"
            + ("; convert it with .astype(np.float64)" if arr.dtype.kind in "biu" else "")
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if any(d > _INT32_MAX for d in arr.shape):
        raise ValueError(f"{name}: dimensions above 2**31 - 1 are not supported: {arr.shape}")
    return aligned(np.asarray(arr, order="C"))  # (unlike ascontiguousarray, keeps 0-d 0-d)


def aligned(arr):
    """`arr`, or a copy of it when its buffer is misaligned for its dtype (np.frombuffer at
    an odd offset, a field of a packed structured array): C may only load aligned elements."""
    return arr if arr.flags.aligned else arr.copy()


def same_dtype(**arrays):
    """The one dtype shared by the named arrays (None entries are skipped)."""
    named = [(k, v) for k, v in arrays.items() if v is not None]
    dtype = named[0][1].dtype
    for k, v in named[1:]:
        if v.dtype != dtype:
            raise TypeError(
                f"{k}: dtype {v.dtype} does not match {named[0][0]}'s {dtype}; "
                "pass all arrays in one dtype"
            )
    return dtype


def shape(arr, name, expected):
    """Checks arr.shape against `expected` (a tuple, None for any size in that place)."""
    if arr.ndim != len(expected) or any(
        e is not None and s != e for s, e in zip(arr.shape, expected)
    ):
        want = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {arr.shape}")


def out_array(out, name, shape_, dtype):
    """A fresh output array, or the caller's `out` after checking it can take the result."""
    if out is None:
        return np.empty(shape_, dtype=dtype)
    writable_array(out, name, shape_, dtype)
    return out


def writable_array(arr, name, shape_, dtype):
    """Checks an array the caller wants written in place."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {arr.dtype}")
    if arr.shape != tuple(shape_):
        raise ValueError(f"{name}: expected shape {tuple(shape_)}, got {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous to be written in place")
    if not arr.flags.aligned:
        raise ValueError(f"{name}: must be aligned for its dtype to be written in place")
    if not arr.flags.writeable:
        raise ValueError(f"{name}: is read-only")
    return arr


def labels(y, name, n_rows, n_classes, check_range=True):
    """Integer class labels as a C-contiguous int64 array, each in [0, n_classes).

    check_range=False leaves the range to a kernel that checks it itself (the C core
    does, in the same pass that reads the labels) and saves two reductions per call.
    """
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: class labels must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"{name}: expected shape ({n_rows},), got {arr.shape}")
    if check_range and n_rows:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{name}: class labels must lie in [0, {n_classes}), found {int(bad)}"
            )
    return aligned(np.ascontiguousarray(arr, dtype=np.int64))


def activation_name(name):
    """The canonical activation name (accepts the aliases in fastmlp._registry)."""
    canonical = ACTIVATION_ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(canonical, str) or canonical not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; expected one of "
                         f"{sorted({*ACTIVATIONS, *ACTIVATION_ALIASES})}")
    return canonical


def activation(name, alpha=None):
    """(code, alpha) for an activation name or alias; alpha only for leaky_relu, elu and
    maxout (its pieces per unit)."""
    name = activation_name(name)
    code, default = ACTIVATIONS[name]
    if alpha is None:
        return code, default
    if name not in ACTIVATIONS_WITH_ALPHA:
        raise ValueError(f"alpha: only {ACTIVATIONS_WITH_ALPHA} take alpha, not {name!r}")
    alpha = real_scalar(alpha, "alpha")
    if name == "leaky_relu" and not 0 <= alpha < 1:
        raise ValueError(f"alpha: leaky_relu needs 0 <= alpha < 1, got {alpha}")
    if name == "elu" and not alpha > 0:
        raise ValueError(f"alpha: elu needs alpha > 0, got {alpha}")
    if name == "maxout" and not (alpha == int(alpha) and 2 <= alpha <= MAX_PIECES):
        raise ValueError(f"alpha: maxout's pieces per unit must be a whole number from 2 "
                         f"to {MAX_PIECES}, got {alpha}")
    return code, alpha


def loss_name(name):
    """The canonical loss name (accepts the aliases in fastmlp._registry)."""
    canonical = LOSS_ALIASES.get(name, name) if isinstance(name, str) else name
    if canonical not in LOSSES:
        raise ValueError(f"loss: unknown {name!r}; expected one of {sorted(LOSSES)}")
    return canonical


def row_indices(rows, name, n):
    """`rows` as a non-empty C-contiguous int64 array of indices into n rows."""
    arr = np.asarray(rows)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{name}: expected a 1-D integer array of row indices, got "
                        f"dtype {arr.dtype} and shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one row index")
    low, high = arr.min(), arr.max()
    if low < 0 or high >= n:
        raise ValueError(f"{name}: row indices must be in [0, {n}), got {low if low < 0 else high}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def real_scalar(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite Python float, optionally within [low, high] (or open at either end)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range
        raise ValueError(f"{name}: expected a finite number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name}: expected a value {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(
            f"{name}: expected a value {'<' if high_open else '<='} {high}, got {value}"
        )
    return value


def positive_int(value, name, low=1, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name}: expected an integer <= {high}, got {value}")
    return int(value)


def sample_weight(weights, n, dtype, *, non_negative=False):
    """Per-row weights as a C-contiguous (n,) array of `dtype`; None stays None. Finite;
    with non_negative, each >= 0 and not all 0."""
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight: expected numbers, got dtype {w.dtype}")
    w = aligned(np.ascontiguousarray(w, dtype=dtype))
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight: contains NaN or infinity")
    if non_negative and (w < 0).any():
        raise ValueError("sample_weight: expected weights >= 0, found a negative one")
    if non_negative and not w.any():
        raise ValueError("sample_weight: every weight is 0")
    return w
