"""Metrics on a whole prediction, in compiled code on the active backend.

Each takes the network's scores as they come (logits or any monotone score, one row per
sample) with the labels or targets, and makes one pass without temporaries of the
prediction's size: no argmax array, no sort for top-k, no softmax table. A row of scores
holding a NaN has no class: it counts as a miss, and makes accuracy NaN (as
``MLP.evaluate`` reports it).
"""

from __future__ import annotations

import math

import numpy as np

from fastmlp import _backend, ops
from fastmlp import _validation as check

__all__ = ["accuracy", "confusion_matrix", "log_loss", "r2_score", "top_k_accuracy"]


def _scores_and_labels(scores, y):
    Z = ops._logits(scores, "scores")  # the losses' check: 2-D float, not empty
    return Z, check.labels(y, "y", Z.shape[0], Z.shape[1])


def _counts(Z, y, k):
    confusion = np.empty((Z.shape[1], Z.shape[1]), np.int64)
    top_k, nan_rows = _backend.active().classification_counts(Z, y, k, confusion)
    return confusion, top_k, nan_rows


def accuracy(scores, y):
    """The fraction of rows whose highest score is their label's.

    Parameters
    ----------
    scores : ndarray of shape (n, k)
        Logits, probabilities or any per-class score, float32 or float64.
    y : ndarray of int of shape (n,)
        Labels in [0, k).

    Returns
    -------
    float
        In [0, 1]; NaN when a row of scores holds a NaN. Ties go to the first class, as
        ``np.argmax``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import metrics
    >>> metrics.accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
    0.5
    """
    Z, y = _scores_and_labels(scores, y)
    confusion, _, nan_rows = _counts(Z, y, 1)
    return math.nan if nan_rows else float(np.trace(confusion)) / len(y)


def top_k_accuracy(scores, y, k=5):
    """The fraction of rows whose label is among their k highest scores.

    A label is among them when fewer than k classes score strictly above it (so a tie
    with the k-th score counts as a hit).

    Parameters
    ----------
    scores : ndarray of shape (n, n_classes)
        Per-class scores, float32 or float64.
    y : ndarray of int of shape (n,)
        Labels in [0, n_classes).
    k : int, default 5
        At least 1; ``k >= n_classes`` gives 1.0 (rows without NaN).

    Returns
    -------
    float
        In [0, 1]; a row holding a NaN counts as a miss.
    """
    Z, y = _scores_and_labels(scores, y)
    k = check.positive_int(k, "k")
    return _counts(Z, y, k)[1] / len(y)


def confusion_matrix(scores, y):
    """Counts of (label, predicted class) pairs, the prediction each row's first maximum.

    Parameters
    ----------
    scores : ndarray of shape (n, k)
        Per-class scores, float32 or float64.
    y : ndarray of int of shape (n,)
        Labels in [0, k).

    Returns
    -------
    ndarray of int64 of shape (k, k)
        Row: the label; column: the predicted class (scikit-learn's layout). Rows of
        scores holding a NaN are not counted.
    """
    Z, y = _scores_and_labels(scores, y)
    return _counts(Z, y, 1)[0]


def log_loss(logits, y, *, sample_weight=None):
    """The mean softmax cross-entropy of logits on labels, its value alone.

    ``sum_i w_i (logsumexp(z_i) - z_{i, y_i}) / sum_i w_i`` (w_i = 1 without weights), in
    double precision, stable for any finite logits. Takes logits, not probabilities: a
    network's output as it is.

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        float32 or float64.
    y : ndarray of int of shape (n,)
        Labels in [0, k).
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.

    Returns
    -------
    float
    """
    Z, y = _scores_and_labels(logits, y)
    if sample_weight is not None:
        sample_weight = check.sample_weight(sample_weight, len(y), Z.dtype, non_negative=True)
        if not np.sum(sample_weight, dtype=np.float64) > 0:
            raise ValueError("sample_weight: expected non-negative weights with a positive sum")
    return float(_backend.active().log_loss(Z, y, sample_weight))


def r2_score(predictions, targets, *, multioutput="uniform_average"):
    """The coefficient of determination, ``1 - SS_res / SS_tot`` per output.

    Parameters
    ----------
    predictions, targets : ndarray of shape (n,) or (n, m)
        float32 or float64, the same shape; at least one row.
    multioutput : {"uniform_average", "raw_values"}, default "uniform_average"
        The mean over the outputs, or each output's. An output whose targets are constant
        scores 1.0 when predicted exactly and 0.0 otherwise (scikit-learn's convention).

    Returns
    -------
    float or ndarray of float64 of shape (m,)
    """
    P = check.float_array(predictions, "predictions")
    Y = check.float_array(targets, "targets")
    check.same_dtype(predictions=P, targets=Y)
    check.shape(Y, "targets", P.shape)
    if P.ndim not in (1, 2) or P.shape[0] == 0 or P.size == 0:
        raise ValueError(f"predictions: expected a 1-D or 2-D array with at least one row, "
                         f"got shape {P.shape}")
    if multioutput not in ("uniform_average", "raw_values"):
        raise ValueError(f"multioutput: expected 'uniform_average' or 'raw_values', got "
                         f"{multioutput!r}")
    P2, Y2 = P.reshape(len(P), -1), Y.reshape(len(Y), -1)
    ss_res, ss_tot = np.empty(P2.shape[1]), np.empty(P2.shape[1])
    _backend.active().regression_sums(P2, Y2, ss_res, ss_tot)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return r2 if multioutput == "raw_values" else float(np.mean(r2))
