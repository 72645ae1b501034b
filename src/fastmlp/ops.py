"""Functional MLP kernels: validate at the boundary, then run on the active backend.

Arrays follow the course's layout: a batch is (n_samples, n_features) and a dense layer
computes ``A = f(X @ W + b)`` with ``W`` of shape (n_in, n_out). Results keep the input
dtype (float32 or float64); see fastmlp._validation for the input rules and NaN policy.
"""

from __future__ import annotations

import numpy as np

from fastmlp import _backend
from fastmlp import _validation as check
from fastmlp._registry import ACTIVATIONS, ACTIVATIONS_NEEDING_Z, OPTIMIZERS

__all__ = [
    "activation_forward",
    "activation_backward",
    "maxout_forward",
    "maxout_backward",
    "dense_forward",
    "dense_backward",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "mean_squared_error",
    "absolute_error",
    "huber",
    "poisson",
    "multiclass_hinge",
    "squared_multiclass_hinge",
    "categorical_cross_entropy",
    "kl_divergence",
    "log_cosh",
    "sgd_update",
    "momentum_update",
    "adam_update",
    "rmsprop_update",
    "adagrad_update",
    "adadelta_update",
    "adamax_update",
    "nadam_update",
    "global_norm_scale",
]


def _kernels(*arrays):
    # Empty arrays go to the reference, which handles every zero-size case by NumPy's rules.
    if any(a is not None and a.size == 0 for a in arrays):
        return _backend.load("numpy")
    return _backend.active()


_NAMES = {code: name for name, (code, _) in ACTIVATIONS.items()}
_CODES_NEEDING_Z = {ACTIVATIONS[name][0] for name in ACTIVATIONS_NEEDING_Z}
_MAXOUT = ACTIVATIONS["maxout"][0]


def _as_2d(arr):
    # elementwise kernels see any C-contiguous array as one row
    return arr.reshape(1, -1)


def activation_forward(name, Z, *, alpha=None, out=None):
    """Apply an activation elementwise: ``A = f(Z)``.

    Parameters
    ----------
    name : str
        The activation: "identity", "relu", "leaky_relu", "sigmoid", "tanh", "elu",
        "softplus", "selu", "gelu" (exact, with erf), "gelu_tanh" (its tanh
        approximation), "swish" (alias "silu"), "mish", "softsign" or "hard_sigmoid"
        (Keras 2's ``clip(0.2 z + 0.5, 0, 1)``); the formulas are in the user guide's
        kernels page. "maxout" is not elementwise: see :func:`maxout_forward`.
    Z : ndarray of float32 or float64
        Any shape (maxout: (n, k * units)).
    alpha : float, optional
        Slope of leaky_relu for z < 0 (default 0.01), scale of elu (default 1.0), or
        maxout's pieces per unit k (default 2).
    out : ndarray, optional
        Where to write A (same shape and dtype as Z; may be Z itself; maxout: (n, units),
        not Z).

    Returns
    -------
    A : ndarray
        The shape and dtype of Z (maxout: (n, units)).

    See Also
    --------
    activation_backward : Its gradient, from the saved output.
    dense_forward : A dense layer with its activation fused.
    """
    code, alpha = check.activation(name, alpha)
    if code == _MAXOUT:
        return maxout_forward(Z, int(alpha), out=out)
    Z = check.float_array(Z, "Z")
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    _kernels(Z).activation_forward(code, alpha, _as_2d(Z), _as_2d(out))
    return out


def activation_backward(name, dA, A, *, Z=None, alpha=None, out=None):
    """Backpropagate through an activation from its saved output: ``dZ = dA * f'(z)``.

    The derivative is written from ``A = f(z)`` (sigmoid ``a(1-a)``, tanh ``1-a^2``,
    relu ``a > 0``, ...), so the pre-activation is not needed, except by gelu,
    gelu_tanh, swish and mish: they are not monotonic (two inputs share an output), so
    their derivative is written from the pre-activation Z, which they require; and
    maxout (see :func:`maxout_backward`), which finds each unit's winning piece in Z.

    Parameters
    ----------
    name : str
        The activation, as for :func:`activation_forward`.
    dA : ndarray
        The gradient of the loss with respect to A.
    A : ndarray
        The activation's output, the shape and dtype of dA.
    Z : ndarray, optional
        The pre-activation (A = f(Z)), the shape and dtype of dA: required by gelu,
        gelu_tanh, swish, mish and maxout (for which it has k times dA's columns),
        unread by the others.
    alpha : float, optional
        The leaky_relu slope / elu scale / maxout's pieces used in the forward pass.
    out : ndarray, optional
        Where to write dZ (may be dA itself; not A or Z; maxout: Z's shape).

    Returns
    -------
    dZ : ndarray
        The shape and dtype of A.
    """
    code, alpha = check.activation(name, alpha)
    dA = check.float_array(dA, "dA")
    A = check.float_array(A, "A")
    check.same_dtype(dA=dA, A=A)
    check.shape(dA, "dA", A.shape)
    if code == _MAXOUT:
        return maxout_backward(dA, Z, int(alpha), out=out)
    Z = _preactivation(code, Z, A)
    out = check.out_array(out, "out", A.shape, A.dtype)
    _kernels(A).activation_backward(code, alpha, _as_2d(dA), _as_2d(A),
                                    None if Z is None else _as_2d(Z), _as_2d(out))
    return out


def _pieces_of(Z, pieces):
    """Z (n, pieces * units) checked for maxout, and units."""
    pieces = check.positive_int(pieces, "pieces")
    check.activation("maxout", pieces)  # a whole number in range
    Z = check.float_array(Z, "Z", ndim=2)
    if Z.shape[1] % pieces:
        raise ValueError(f"Z: maxout's {pieces} pieces per unit need a multiple of "
                         f"{pieces} columns, got {Z.shape[1]}")
    return Z, Z.shape[1] // pieces


def _maxout_preactivation(Z, pieces):
    """The pre-activation maxout's backward pass reads (required: which piece won), and
    units."""
    if Z is None:
        raise ValueError("Z: maxout's derivative needs the pre-activation Z (which piece "
                         "won)")
    return _pieces_of(Z, pieces)


def maxout_forward(Z, pieces=2, *, out=None):
    """Maxout: each unit is the largest of its ``pieces`` pre-activations.

    ``A[:, j] = Z[:, j*k:(j+1)*k].max(axis=1)`` with ``k = pieces`` (Goodfellow et al.
    2013): a learned, piecewise-linear convex activation (two pieces can make relu, the
    absolute value or a leaky relu). A NaN among a unit's pieces is its output.

    Parameters
    ----------
    Z : ndarray of shape (n, k * units)
        The pre-activations, float32 or float64; unit j's pieces are adjacent.
    pieces : int, default 2
        k, from 2 to 64.
    out : ndarray of shape (n, units), optional
        Where to write A (Z's dtype; not Z).

    Returns
    -------
    A : ndarray of shape (n, units)
        The dtype of Z.

    See Also
    --------
    maxout_backward : Its gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> ops.maxout_forward(np.array([[1.0, -2.0, 0.5, 3.0]]), pieces=2)
    array([[1., 3.]])
    """
    Z, units = _pieces_of(Z, pieces)
    out = check.out_array(out, "out", (Z.shape[0], units), Z.dtype)
    if np.may_share_memory(out, Z):
        raise ValueError("out: must not overlap Z")
    _kernels(Z, out).maxout_forward(pieces, Z, out)
    return out


def maxout_backward(dA, Z, pieces=2, *, out=None):
    """The gradient of maxout: each unit's ``dA`` goes to its winning piece alone.

    ``dZ[:, j*k + p] = dA[:, j]`` where piece p won unit j (the first maximum of its
    pieces, or its first NaN: ``np.argmax``'s rule), 0 for the other pieces. At a tie
    the derivative does not exist; the first maximum takes it, as every backend does.

    Parameters
    ----------
    dA : ndarray of shape (n, units)
        The gradient of the loss with respect to maxout's output.
    Z : ndarray of shape (n, k * units)
        The pre-activations of the forward pass, dA's dtype.
    pieces : int, default 2
        k, as in the forward pass.
    out : ndarray of shape (n, k * units), optional
        Where to write dZ (dA's dtype; may be Z itself, not dA).

    Returns
    -------
    dZ : ndarray of shape (n, k * units)
        The dtype of dA.

    See Also
    --------
    maxout_forward : The forward pass.
    """
    Z, units = _maxout_preactivation(Z, pieces)
    dA = check.float_array(dA, "dA", ndim=2)
    check.same_dtype(dA=dA, Z=Z)
    check.shape(dA, "dA", (Z.shape[0], units))
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    if np.may_share_memory(out, dA):
        raise ValueError("out: must not overlap dA")
    _kernels(Z, out).maxout_backward(pieces, dA, Z, out)
    return out


def _preactivation(code, Z, A):
    """Z checked against A where activation `code` reads it, else None."""
    if code not in _CODES_NEEDING_Z:
        return None
    if Z is None:
        raise ValueError(f"Z: {_NAMES[code]}'s derivative needs the pre-activation Z "
                         f"(its output does not determine it)")
    Z = check.float_array(Z, "Z")
    check.same_dtype(A=A, Z=Z)
    check.shape(Z, "Z", A.shape)
    return Z


def _dense_arrays(X, W, b):
    X = check.float_array(X, "X", ndim=2)
    W = check.float_array(W, "W", ndim=2)
    b = check.float_array(b, "b")
    if b.ndim == 2 and b.shape[0] == 1:
        b = b.reshape(-1)  # the course keeps b as (1, n_out)
    check.same_dtype(X=X, W=W, b=b)
    if X.shape[1] != W.shape[0]:
        raise ValueError(
            f"X and W do not chain: X has {X.shape[1]} columns, W has {W.shape[0]} rows"
        )
    check.shape(b, "b", (W.shape[1],))
    return X, W, b


def dense_forward(X, W, b, activation="relu", *, alpha=None, out=None, Z_out=None):
    """A dense layer with its activation fused: ``A = f(X @ W + b)``.

    Parameters
    ----------
    X : ndarray of shape (n, n_in)
        The layer's input, float32 or float64.
    W : ndarray of shape (n_in, n_out)
        The weights, X's dtype.
    b : ndarray of shape (n_out,) or (1, n_out)
        The biases, X's dtype.
    activation : str, default "relu"
        As for :func:`activation_forward`. For "maxout" of k pieces, W's n_out columns
        are k per unit, and A has n_out / k columns.
    alpha : float, optional
        The leaky_relu slope / elu scale / maxout's pieces.
    out : ndarray of shape (n, n_out), optional
        Where to write A; must not overlap X, W or b.
    Z_out : ndarray of shape (n, n_out), optional
        Where to write the pre-activation ``X @ W + b`` as well (what dense_backward needs
        for gelu, gelu_tanh, swish, mish and maxout); must not overlap X, W, b or out.

    Returns
    -------
    A : ndarray of shape (n, n_out)
        The dtype of X.

    See Also
    --------
    dense_backward : Its backward pass.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> X = np.array([[1.0, -2.0]])
    >>> W = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    >>> ops.dense_forward(X, W, np.zeros(3), activation="relu")
    array([[1., 0., 0.]])
    """
    code, alpha = check.activation(activation, alpha)
    X, W, b = _dense_arrays(X, W, b)
    units = _units(code, alpha, W)
    out = check.out_array(out, "out", (X.shape[0], units), X.dtype)
    for name, arr in (("X", X), ("W", W), ("b", b)):
        if np.may_share_memory(out, arr):
            raise ValueError(f"out: must not overlap {name}")
    if code == _MAXOUT and Z_out is None:
        Z_out = np.empty((X.shape[0], W.shape[1]), X.dtype)  # the kernels keep the pieces
    if Z_out is not None:
        Z_out = check.out_array(Z_out, "Z_out", (X.shape[0], W.shape[1]), X.dtype)
        for name, arr in (("X", X), ("W", W), ("b", b), ("out", out)):
            if np.may_share_memory(Z_out, arr):
                raise ValueError(f"Z_out: must not overlap {name}")
    _kernels(X, W, out).dense_forward(X, W, b, code, alpha, out, Z_out)
    return out


def _units(code, alpha, W):
    """A dense layer's output columns: W's, or maxout's units (W's over its pieces)."""
    if code != _MAXOUT:
        return W.shape[1]
    if W.shape[1] % int(alpha):
        raise ValueError(f"W: maxout's {int(alpha)} pieces per unit need a multiple of "
                         f"{int(alpha)} columns, got {W.shape[1]}")
    return W.shape[1] // int(alpha)


def dense_backward(dA, X, W, A, activation, *, Z=None, alpha=None, l2=0.0, l1=0.0,
                   need_dX=True):
    """Backward pass of ``A = f(X @ W + b)`` with the activation derivative fused.

    ``dZ = dA * f'(A)`` (``f'(Z)`` for gelu, gelu_tanh, swish and mish; maxout:
    :func:`maxout_backward`),
    ``dW = X.T @ dZ + l2 * W + l1 * sign(W)``, ``db = dZ.sum(0)``,
    ``dX = dZ @ W.T``.

    Parameters
    ----------
    dA : ndarray of shape (n, n_out)
        The gradient of the loss with respect to A.
    X : ndarray of shape (n, n_in)
        The layer's input.
    W : ndarray of shape (n_in, n_out)
        The layer's weights.
    A : ndarray of shape (n, n_out)
        The layer's saved output (maxout of k pieces: (n, n_out / k), and dA too).
    activation : str
        The layer's activation, as for :func:`activation_forward`.
    Z : ndarray of shape (n, n_out), optional
        The layer's pre-activation ``X @ W + b`` (dense_forward's Z_out): required by
        gelu, gelu_tanh, swish, mish and maxout, unread by the others.
    alpha : float, optional
        The leaky_relu slope / elu scale / maxout's pieces.
    l2, l1 : float, default 0
        Penalty strengths; their gradient is added to dW (never to db).
    need_dX : bool, default True
        False skips dX (the first layer needs none) and returns None in its place.

    Returns
    -------
    dX : ndarray of shape (n, n_in) or None
        The gradient with respect to X.
    dW : ndarray of shape (n_in, n_out)
        The gradient with respect to W, penalties included.
    db : ndarray of shape (n_out,)
        The gradient with respect to b.

    See Also
    --------
    dense_forward : The forward pass.
    """
    code, alpha = check.activation(activation, alpha)
    l2 = check.real_scalar(l2, "l2", low=0)
    l1 = check.real_scalar(l1, "l1", low=0)
    dA = check.float_array(dA, "dA", ndim=2)
    X = check.float_array(X, "X", ndim=2)
    W = check.float_array(W, "W", ndim=2)
    A = check.float_array(A, "A", ndim=2)
    dtype = check.same_dtype(dA=dA, X=X, W=W, A=A)
    n, n_in = X.shape
    if W.shape[0] != n_in:
        raise ValueError(
            f"X and W do not chain: X has {n_in} columns, W has {W.shape[0]} rows"
        )
    check.shape(A, "A", (n, _units(code, alpha, W)))
    check.shape(dA, "dA", A.shape)
    if code == _MAXOUT:
        Z, _ = _maxout_preactivation(Z, int(alpha))
        check.same_dtype(A=A, Z=Z)
        check.shape(Z, "Z", (n, W.shape[1]))
    else:
        Z = _preactivation(code, Z, A)
    dZ = np.empty((n, W.shape[1]), dtype)
    dX = np.empty((n, n_in), dtype) if need_dX else None
    dW = np.empty_like(W)
    db = np.empty(W.shape[1], dtype)
    _kernels(X, W, A).dense_backward(dA, X, W, A, Z, code, alpha, l2, l1, dZ, dX, dW, db)
    return dX, dW, db


def _logits(Z, name="logits"):
    Z = check.float_array(Z, name, ndim=2)
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one row and one column, got {Z.shape}")
    return Z


def softmax(Z, *, out=None):
    """Row-wise softmax, stable for any finite input.

    ``softmax(z)_j = exp(z_j - max z) / sum_l exp(z_l - max z)``.

    Parameters
    ----------
    Z : ndarray of shape (n, k)
        Logits, float32 or float64; at least one row and one column.
    out : ndarray of shape (n, k), optional
        Where to write the result.

    Returns
    -------
    P : ndarray of shape (n, k)
        Each row sums to 1; the dtype of Z.
    """
    Z = _logits(Z, "Z")
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    _kernels(Z).softmax(Z, False, out)
    return out


def log_softmax(Z, *, out=None):
    """Row-wise log-softmax, ``z - logsumexp(z)``, stable for any finite input.

    Parameters
    ----------
    Z : ndarray of shape (n, k)
        Logits, float32 or float64; at least one row and one column.
    out : ndarray of shape (n, k), optional
        Where to write the result.

    Returns
    -------
    log_P : ndarray of shape (n, k)
        The dtype of Z.
    """
    Z = _logits(Z, "Z")
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    _kernels(Z).softmax(Z, True, out)
    return out


def softmax_cross_entropy(logits, y, *, sample_weight=None, out=None):
    """Mean softmax cross-entropy on integer labels and its gradient, in one pass.

    ``loss = sum_i w_i (logsumexp(z_i) - z_{i, y_i}) / sum_i w_i`` (w_i = 1 without
    weights: the course's mean), ``dlogits = w_i (softmax(z_i) - onehot(y_i)) / sum w``.

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        float32 or float64.
    y : ndarray of int of shape (n,)
        Class labels, each in [0, k).
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.
    out : ndarray of shape (n, k), optional
        Where to write dlogits.

    Returns
    -------
    loss : float
        The (weighted) mean cross-entropy.
    dlogits : ndarray of shape (n, k)
        Its gradient with respect to the logits, the dtype of logits.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> loss, dlogits = ops.softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> print(f"{loss:.6f}")  # log(4): four equally likely classes
    1.386294
    >>> dlogits
    array([[-0.375,  0.125,  0.125,  0.125],
           [ 0.125,  0.125,  0.125, -0.375]])
    """
    Z = _logits(logits)
    y = check.labels(y, "y", Z.shape[0], Z.shape[1])
    sample_weight = _row_weights(sample_weight, Z)
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    loss = _kernels(Z).softmax_cross_entropy(Z, y, sample_weight, out)
    return loss, out


def _row_weights(sample_weight, Z):
    """sample_weight as a (n,) array of Z's dtype, non-negative with a positive sum (or
    None)."""
    if sample_weight is None:
        return None
    sample_weight = check.float_array(sample_weight, "sample_weight", ndim=1).astype(
        Z.dtype, copy=False
    )
    check.shape(sample_weight, "sample_weight", (Z.shape[0],))
    if not np.all(sample_weight >= 0) or not np.sum(sample_weight) > 0:
        raise ValueError("sample_weight: expected non-negative weights with a positive sum")
    return sample_weight


def _targets(Y, Z, name):
    Y = check.float_array(Y, name)
    if Y.ndim == 1 and Z.shape[1] == 1:
        Y = Y.reshape(-1, 1)
    check.same_dtype(**{"logits": Z, name: Y})
    check.shape(Y, name, Z.shape)
    return Y


def sigmoid_binary_cross_entropy(logits, targets, *, out=None):
    """Binary cross-entropy on logits, summed over outputs, averaged over rows.

    ``loss = sum(max(z, 0) - z y + log1p(exp(-|z|))) / n``, ``dlogits = (sigmoid(z) - y) / n``.

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        Values in [0, 1], the dtype of logits ((n,) when k == 1).
    out : ndarray of shape (n, k), optional
        Where to write dlogits.

    Returns
    -------
    loss : float
        The loss, summed over the outputs and averaged over the rows.
    dlogits : ndarray of shape (n, k)
        Its gradient with respect to the logits.
    """
    Z = _logits(logits)
    Y = _targets(targets, Z, "targets")
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    return _kernels(Z).sigmoid_binary_cross_entropy(Z, Y, out), out


def _regression_loss(kernel, predictions, targets, out):
    """(loss, gradient) of the backend's kernel of that name on (n, k) predictions."""
    P = _logits(predictions, "predictions")
    Y = _targets(targets, P, "targets")
    out = check.out_array(out, "out", P.shape, P.dtype)
    return getattr(_kernels(P), kernel)(P, Y, out), out


def mean_squared_error(predictions, targets, *, out=None):
    """``loss = sum((p - y)^2) / (2 n)`` and its gradient ``(p - y) / n``.

    Parameters
    ----------
    predictions : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        The dtype of predictions ((n,) when k == 1).
    out : ndarray of shape (n, k), optional
        Where to write dpredictions.

    Returns
    -------
    loss : float
        The loss, summed over the outputs and averaged over the rows.
    dpredictions : ndarray of shape (n, k)
        Its gradient with respect to the predictions.
    """
    return _regression_loss("mean_squared_error", predictions, targets, out)


def absolute_error(predictions, targets, *, out=None):
    """``loss = sum(|p - y|) / n`` and its (sub)gradient ``sign(p - y) / n``.

    The sign is 0 where ``p == y`` and NaN where ``p - y`` is NaN.

    Parameters
    ----------
    predictions : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        The dtype of predictions ((n,) when k == 1).
    out : ndarray of shape (n, k), optional
        Where to write dpredictions.

    Returns
    -------
    loss : float
        The loss, summed over the outputs and averaged over the rows.
    dpredictions : ndarray of shape (n, k)
        Its gradient with respect to the predictions.
    """
    return _regression_loss("absolute_error", predictions, targets, out)


def huber(predictions, targets, *, out=None):
    """The Huber loss with delta 1 and its gradient.

    Summed over the outputs, averaged over the rows. With ``r = p - y``:
    ``loss = sum(r^2 / 2 if |r| <= 1 else |r| - 1/2) / n``,
    ``dpredictions = clip(r, -1, 1) / n`` (NaN where ``r`` is NaN).

    Parameters
    ----------
    predictions : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        The dtype of predictions ((n,) when k == 1).
    out : ndarray of shape (n, k), optional
        Where to write dpredictions.

    Returns
    -------
    loss : float
        The loss, summed over the outputs and averaged over the rows.
    dpredictions : ndarray of shape (n, k)
        Its gradient with respect to the predictions.
    """
    return _regression_loss("huber", predictions, targets, out)


def poisson(log_means, targets, *, out=None):
    """Half Poisson deviance with the log link and its gradient.

    scikit-learn's ``loss="poisson"``, summed over the outputs, averaged over the rows.
    The input is ``z = log(mu)``:
    ``loss = sum(y log(y) - y z - y + exp(z)) / n`` (``y log(y) = 0`` at ``y = 0``),
    ``dlog_means = (exp(z) - y) / n``.

    Parameters
    ----------
    log_means : ndarray of shape (n, k)
        ``z = log(mu)``, float32 or float64.
    targets : ndarray of shape (n, k)
        Counts >= 0, the dtype of log_means ((n,) when k == 1).
    out : ndarray of shape (n, k), optional
        Where to write dlog_means.

    Returns
    -------
    loss : float
        The half deviance, summed over the outputs and averaged over the rows.
    dlog_means : ndarray of shape (n, k)
        Its gradient with respect to the log means.
    """
    Z = _logits(log_means, "log_means")
    Y = _targets(targets, Z, "targets")
    if np.any(Y < 0):
        raise ValueError("targets: the poisson loss needs counts >= 0 (found a negative "
                         "target)")
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    return _kernels(Z).poisson(Z, Y, out), out


def multiclass_hinge(scores, y, *, margin=1.0, squared=False, sample_weight=None, out=None):
    """The multiclass SVM (hinge) loss of the course and its (sub)gradient, in one pass.

    With ``m_ij = s_ij - s_{i, y_i} + margin``:
    ``loss = sum_i w_i sum_{j != y_i} max(0, m_ij) / sum_i w_i`` (squared:
    ``max(0, m_ij)**2``; w_i = 1 without weights: the mean over the rows),
    ``dscores_ij = w_i [m_ij > 0] / sum w`` (squared: ``2 m_ij [m_ij > 0]``) for
    ``j != y_i`` and ``dscores_{i, y_i} = -sum_{j != y_i} dscores_ij``.

    At a kink (a score exactly at the margin, ``m_ij == 0``) the subgradient is 0: a
    violation counts only where ``m_ij > 0``. A NaN score makes the loss and the gradient
    NaN.

    Parameters
    ----------
    scores : ndarray of shape (n, k)
        Class scores, float32 or float64.
    y : ndarray of int of shape (n,)
        Class labels, each in [0, k).
    margin : float, default 1.0
        The margin Delta, >= 0.
    squared : bool, default False
        Square each term (the L2-SVM).
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.
    out : ndarray of shape (n, k), optional
        Where to write dscores (may be scores itself).

    Returns
    -------
    loss : float
        The (weighted) mean over the rows of the hinge terms summed over the classes.
    dscores : ndarray of shape (n, k)
        Its gradient with respect to the scores, the dtype of scores.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import ops
    >>> # the course's example: scores of cat, car, frog for a cat image
    >>> loss, dscores = ops.multiclass_hinge(np.array([[3.2, 5.1, -1.7]]), np.array([0]))
    >>> print(f"{loss:.1f}")  # max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1)
    2.9
    >>> dscores
    array([[-1.,  1.,  0.]])
    """
    Z = _logits(scores, "scores")
    y = check.labels(y, "y", Z.shape[0], Z.shape[1])
    margin = check.real_scalar(margin, "margin", low=0)
    if not isinstance(squared, (bool, np.bool_)):
        raise TypeError(f"squared: expected True or False, got {squared!r}")
    sample_weight = _row_weights(sample_weight, Z)
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    loss = _kernels(Z).multiclass_hinge(Z, y, sample_weight, margin, bool(squared), out)
    return loss, out


def squared_multiclass_hinge(scores, y, *, margin=1.0, sample_weight=None, out=None):
    """:func:`multiclass_hinge` with ``squared=True``: ``sum_{j != y} max(0, m_j)**2``.

    The name of NetworkPlan's loss ``"squared_multiclass_hinge"`` (the L2-SVM).

    Parameters
    ----------
    scores : ndarray of shape (n, k)
        Class scores, float32 or float64.
    y : ndarray of int of shape (n,)
        Class labels, each in [0, k).
    margin : float, default 1.0
        The margin Delta, >= 0.
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.
    out : ndarray of shape (n, k), optional
        Where to write dscores (may be scores itself).

    Returns
    -------
    loss : float
        The (weighted) mean over the rows of the squared hinge terms.
    dscores : ndarray of shape (n, k)
        Its gradient with respect to the scores, the dtype of scores.
    """
    return multiclass_hinge(scores, y, margin=margin, squared=True,
                            sample_weight=sample_weight, out=out)


def _soft_targets(targets, Z):
    T = _targets(targets, Z, "targets")
    if np.any(T < 0):
        raise ValueError("targets: expected probabilities >= 0 (found a negative target)")
    return T


def categorical_cross_entropy(logits, targets, *, sample_weight=None, out=None):
    """Softmax cross-entropy on one-hot or soft target rows, and its gradient, in one pass.

    With ``T_i = sum_j t_ij`` and the stable log-sum-exp (``m = max_j z_ij``):
    ``loss_i = -sum_j t_ij log softmax(z_i)_j = sum_j t_ij (m - z_ij) + T_i log sum_j
    exp(z_ij - m)``, ``loss = sum_i w_i loss_i / sum_i w_i``, and
    ``dlogits_i = w_i (softmax(z_i) T_i - t_i) / sum w``: ``softmax - t`` for rows of
    probabilities (summing to 1). Rows that do not sum to 1 get this general gradient of
    the same formula (the loss then weighs the row by its sum).

    With one-hot rows it is :func:`softmax_cross_entropy` on their labels: the same
    gradient bits, the loss to rounding in float64.

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        Target probabilities (>= 0), the dtype of logits.
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.
    out : ndarray of shape (n, k), optional
        Where to write dlogits (may be logits itself).

    Returns
    -------
    loss : float
        The (weighted) mean cross-entropy.
    dlogits : ndarray of shape (n, k)
        Its gradient with respect to the logits.
    """
    Z = _logits(logits)
    T = _soft_targets(targets, Z)
    sample_weight = _row_weights(sample_weight, Z)
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    return _kernels(Z).categorical_cross_entropy(Z, T, sample_weight, out), out


def kl_divergence(logits, targets, *, sample_weight=None, out=None):
    """Kullback-Leibler divergence KL(t || softmax(z)) and its gradient, in one pass.

    ``loss_i = sum_j t_ij log(t_ij / softmax(z_i)_j)`` with ``0 log 0 = 0``: the
    categorical cross-entropy minus the entropy of t, so 0 where softmax(z) equals t and
    positive elsewhere; ``loss = sum_i w_i loss_i / sum_i w_i``. The gradient is the
    cross-entropy's, ``w_i (softmax(z_i) sum_j t_ij - t_i) / sum w``. Stable for any
    finite logits (``log softmax`` is never taken of an underflowed probability).

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        Target probabilities (>= 0, zeros allowed), the dtype of logits.
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.
    out : ndarray of shape (n, k), optional
        Where to write dlogits (may be logits itself).

    Returns
    -------
    loss : float
        The (weighted) mean divergence.
    dlogits : ndarray of shape (n, k)
        Its gradient with respect to the logits.
    """
    Z = _logits(logits)
    T = _soft_targets(targets, Z)
    sample_weight = _row_weights(sample_weight, Z)
    out = check.out_array(out, "out", Z.shape, Z.dtype)
    return _kernels(Z).kl_divergence(Z, T, sample_weight, out), out


def log_cosh(predictions, targets, *, sample_weight=None, out=None):
    """The log-cosh regression loss and its gradient, in one pass.

    Summed over the outputs, a (weighted) mean over the rows. With ``r = p - y``:
    ``log(cosh(r)) = |r| + log1p(exp(-2|r|)) - log(2)`` (no overflow for large ``|r|``;
    ``log1p(2 sinh(r/2)**2)`` for ``|r| <= 1``, without cancellation), about ``r**2 / 2``
    near the target and ``|r| - log 2`` far from it; ``dpredictions = w_i tanh(r) / sum w``.

    Parameters
    ----------
    predictions : ndarray of shape (n, k)
        float32 or float64.
    targets : ndarray of shape (n, k)
        The dtype of predictions ((n,) when k == 1).
    sample_weight : ndarray of shape (n,), optional
        Non-negative, with a positive sum.
    out : ndarray of shape (n, k), optional
        Where to write dpredictions (may be predictions itself).

    Returns
    -------
    loss : float
        The loss, summed over the outputs and averaged over the rows.
    dpredictions : ndarray of shape (n, k)
        Its gradient with respect to the predictions.
    """
    P = _logits(predictions, "predictions")
    Y = _targets(targets, P, "targets")
    sample_weight = _row_weights(sample_weight, P)
    out = check.out_array(out, "out", P.shape, P.dtype)
    return _kernels(P).log_cosh(P, Y, sample_weight, out), out


def _update(kind, param, grad, states, step, lr, momentum=0.0, beta1=0.9, beta2=0.999,
            eps=1e-8, weight_decay=0.0, rho=0.9, momentum_decay=4e-3, clip_value=None,
            grad_scale=1.0):
    if not isinstance(param, np.ndarray):
        raise TypeError(f"param: expected a numpy.ndarray, got {type(param).__name__}")
    check.writable_array(param, "param", param.shape, param.dtype)
    if param.dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"param: expected float32 or float64, got {param.dtype}")
    grad = check.float_array(grad, "grad")
    check.same_dtype(param=param, grad=grad)
    check.shape(grad, "grad", param.shape)
    for name, state in states.items():
        check.writable_array(state, name, param.shape, param.dtype)
    # one pass reads g and writes param and the state element by element: arrays that
    # overlap would read what the pass has already written
    written = {"param": param, **states}
    names = list(written)
    for i, name in enumerate(names):
        for other in names[i + 1:]:
            if np.may_share_memory(written[name], written[other]):
                raise ValueError(f"{other}: must not overlap {name}")
        if np.may_share_memory(grad, written[name]):
            raise ValueError(f"grad: must not overlap {name}")
    lr = check.real_scalar(lr, "lr", low=0)
    clip_value = _clip_value(clip_value)
    grad_scale = check.real_scalar(grad_scale, "grad_scale", low=0, low_open=True)
    flat = [None if s is None else s.reshape(-1) for s in states.values()]
    flat += [None] * (2 - len(flat))
    if param.size:
        _backend.active().optimizer_update(
            kind, lr, momentum, beta1, beta2, eps, weight_decay, rho, momentum_decay,
            clip_value or 0.0, grad_scale, step, param.reshape(-1), grad.reshape(-1), flat[0],
            flat[1], True,
        )
    return param


def _clip_value(clip_value):
    if clip_value is None:
        return None
    return check.real_scalar(clip_value, "clip_value", low=0, low_open=True)


def global_norm_scale(grads, clip_norm, *, clip_value=None):
    """Global-norm clipping's factor: ``min(1, clip_norm / ||g||_2)``.

    The norm is taken over every array in grads together (each clipped into
    ``[-clip_value, clip_value]`` first when clip_value is given), summed in float64.
    Pass the result as ``grad_scale`` to each array's update.

    Parameters
    ----------
    grads : sequence of ndarray
        The gradients of all parameter arrays (float32 or float64).
    clip_norm : float
        The largest norm, > 0.
    clip_value : float, optional
        The element clipping the updates will apply, > 0.

    Returns
    -------
    float
        In (0, 1]; 1 when the norm is at most clip_norm, or not finite (NaN or inf
        gradients are left as they are).
    """
    from fastmlp.backends._python_network import global_norm_scale as scale

    clip_norm = check.real_scalar(clip_norm, "clip_norm", low=0, low_open=True)
    clip_value = _clip_value(clip_value)
    arrays = [check.float_array(g, f"grads[{i}]") for i, g in enumerate(grads)]
    return scale(arrays, clip_norm, clip_value or 0.0)


def sgd_update(param, grad, lr, *, clip_value=None, grad_scale=1.0):
    """Plain gradient descent, in place: ``param -= lr * grad``.

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param.
    lr : float
        The learning rate, >= 0.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    return _update(OPTIMIZERS["sgd"], param, grad, {}, 1, lr, clip_value=clip_value,
                   grad_scale=grad_scale)


def momentum_update(param, grad, velocity, lr, momentum=0.9, *, nesterov=False,
                    clip_value=None, grad_scale=1.0):
    """Gradient descent with momentum (or Nesterov's), in place.

    ``v = momentum * v - lr * g; param += v`` (Nesterov:
    ``param += momentum * v - lr * g`` with the new ``v``).

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param.
    velocity : ndarray
        The velocity ``v``, the shape and dtype of param, C-contiguous and writeable;
        updated in place (start from zeros).
    lr : float
        The learning rate, >= 0.
    momentum : float, default 0.9
        In [0, 1).
    nesterov : bool, default False
        Nesterov's momentum.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    momentum = check.real_scalar(momentum, "momentum", low=0, high=1, high_open=True)
    kind = OPTIMIZERS["nesterov" if nesterov else "momentum"]
    return _update(kind, param, grad, {"velocity": velocity}, 1, lr, momentum=momentum,
                   clip_value=clip_value, grad_scale=grad_scale)


def adam_update(param, grad, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, *, clip_value=None, grad_scale=1.0):
    """Adam with bias correction (AdamW when weight_decay > 0), in place.

    ``m = b1 * m + (1 - b1) * g``, ``v = b2 * v + (1 - b2) * g**2``,
    ``param -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``; with
    weight_decay, ``param *= 1 - lr * weight_decay`` first (decoupled decay).

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param.
    m, v : ndarray
        The first and second moment estimates, the shape and dtype of param,
        C-contiguous and writeable; updated in place (start from zeros).
    step : int
        ``t``, the number of this update, from 1.
    lr : float, default 1e-3
        The learning rate, >= 0.
    beta1, beta2 : float, default 0.9, 0.999
        The moments' decay rates, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    weight_decay : float, default 0
        AdamW's decoupled weight decay, >= 0 (not clipped: it is not a gradient).
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    step = check.positive_int(step, "step", high=2**63 - 1)  # the kernels take an int64
    beta1 = check.real_scalar(beta1, "beta1", low=0, high=1, high_open=True)
    beta2 = check.real_scalar(beta2, "beta2", low=0, high=1, high_open=True)
    eps = check.real_scalar(eps, "eps", low=0, low_open=True)
    weight_decay = check.real_scalar(weight_decay, "weight_decay", low=0)
    kind = OPTIMIZERS["adamw" if weight_decay > 0 else "adam"]
    return _update(kind, param, grad, {"m": m, "v": v}, step, lr, beta1=beta1, beta2=beta2,
                   eps=eps, weight_decay=weight_decay, clip_value=clip_value,
                   grad_scale=grad_scale)


def _unit_interval(value, name):
    return check.real_scalar(value, name, low=0, high=1, high_open=True)


def _step(step):
    return check.positive_int(step, "step", high=2**63 - 1)  # the kernels take an int64


def rmsprop_update(param, grad, v, lr=1e-3, rho=0.9, eps=1e-8, *, clip_value=None,
                   grad_scale=1.0):
    """RMSprop (PyTorch's form, without momentum and centring), in place.

    ``v = rho * v + (1 - rho) * g**2``, ``param -= lr * g / (sqrt(v) + eps)``.

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param; not modified.
    v : ndarray
        The mean square of the gradients, the shape and dtype of param, C-contiguous and
        writeable; updated in place (start from zeros).
    lr : float, default 1e-3
        The learning rate, >= 0.
    rho : float, default 0.9
        The mean square's decay, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    rho = _unit_interval(rho, "rho")
    eps = check.real_scalar(eps, "eps", low=0, low_open=True)
    return _update(OPTIMIZERS["rmsprop"], param, grad, {"v": v}, 1, lr, eps=eps, rho=rho,
                   clip_value=clip_value, grad_scale=grad_scale)


def adagrad_update(param, grad, accumulator, lr=1e-2, eps=1e-10, *, clip_value=None,
                   grad_scale=1.0):
    """Adagrad (PyTorch's form), in place.

    ``s += g**2``, ``param -= lr * g / (sqrt(s) + eps)``.

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param; not modified.
    accumulator : ndarray
        The sum of squared gradients ``s``, the shape and dtype of param, C-contiguous and
        writeable; updated in place (start from the initial accumulator value, e.g. 0 or
        Keras's 0.1).
    lr : float, default 1e-2
        The learning rate, >= 0.
    eps : float, default 1e-10
        Added to the denominator, > 0.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    eps = check.real_scalar(eps, "eps", low=0, low_open=True)
    return _update(OPTIMIZERS["adagrad"], param, grad, {"accumulator": accumulator}, 1, lr,
                   eps=eps, clip_value=clip_value, grad_scale=grad_scale)


def adadelta_update(param, grad, v, u, lr=1.0, rho=0.95, eps=1e-6, *, clip_value=None,
                    grad_scale=1.0):
    """Adadelta (Zeiler), in place.

    ``v = rho * v + (1 - rho) * g**2``, ``d = sqrt(u + eps) / sqrt(v + eps) * g``,
    ``u = rho * u + (1 - rho) * d**2``, ``param -= lr * d``.

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param; not modified.
    v, u : ndarray
        The mean squares of the gradients and of the steps, the shape and dtype of param,
        C-contiguous and writeable; updated in place (start from zeros).
    lr : float, default 1.0
        The learning rate, >= 0.
    rho : float, default 0.95
        The mean squares' decay, in [0, 1).
    eps : float, default 1e-6
        Inside both square roots, > 0.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    rho = _unit_interval(rho, "rho")
    eps = check.real_scalar(eps, "eps", low=0, low_open=True)
    return _update(OPTIMIZERS["adadelta"], param, grad, {"v": v, "u": u}, 1, lr, eps=eps,
                   rho=rho, clip_value=clip_value, grad_scale=grad_scale)


def adamax_update(param, grad, m, u, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, *,
                  clip_value=None, grad_scale=1.0):
    """Adamax (PyTorch's form), in place.

    ``m = b1 * m + (1 - b1) * g``, ``u = max(b2 * u, |g| + eps)``,
    ``param -= lr / (1 - b1**t) * m / u``.

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param; not modified.
    m, u : ndarray
        The first moment and the infinity norm, the shape and dtype of param,
        C-contiguous and writeable; updated in place (start from zeros).
    step : int
        ``t``, the number of this update, from 1.
    lr : float, default 2e-3
        The learning rate, >= 0.
    beta1, beta2 : float, default 0.9, 0.999
        The decay rates of m and u, in [0, 1).
    eps : float, default 1e-8
        Added to ``|g|`` inside the maximum, > 0.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    step = _step(step)
    beta1, beta2 = _unit_interval(beta1, "beta1"), _unit_interval(beta2, "beta2")
    eps = check.real_scalar(eps, "eps", low=0, low_open=True)
    return _update(OPTIMIZERS["adamax"], param, grad, {"m": m, "u": u}, step, lr, beta1=beta1,
                   beta2=beta2, eps=eps, clip_value=clip_value, grad_scale=grad_scale)


def nadam_update(param, grad, m, v, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 momentum_decay=4e-3, *, clip_value=None, grad_scale=1.0):
    """Nadam (Dozat; PyTorch's NAdam), in place.

    ``mu_t = b1 * (1 - 0.5 * 0.96**(t * momentum_decay))``, ``P_t = mu_1 * ... * mu_t``,
    ``m = b1 * m + (1 - b1) * g``, ``v = b2 * v + (1 - b2) * g**2``,
    ``param -= lr * ((1 - mu_t) / (1 - P_t) * g + mu_{t+1} / (1 - P_t * mu_{t+1}) * m)
    / (sqrt(v / (1 - b2**t)) + eps)``.

    Parameters
    ----------
    param : ndarray
        The parameter array, float32 or float64, C-contiguous and writeable; updated in
        place.
    grad : ndarray
        Its gradient, the shape and dtype of param; not modified.
    m, v : ndarray
        The first and second moment estimates, the shape and dtype of param,
        C-contiguous and writeable; updated in place (start from zeros).
    step : int
        ``t``, the number of this update, from 1.
    lr : float, default 2e-3
        The learning rate, >= 0.
    beta1, beta2 : float, default 0.9, 0.999
        The moments' decay rates, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    momentum_decay : float, default 4e-3
        ``psi`` of the momentum schedule, >= 0.
    clip_value : float, optional
        Clip each gradient element into ``[-clip_value, clip_value]`` first, > 0.
    grad_scale : float, default 1
        Then multiply the gradient by this, > 0: global-norm clipping's factor, from
        :func:`global_norm_scale` over every gradient of the model.

    Returns
    -------
    param : ndarray
        The same array, updated.
    """
    step = _step(step)
    beta1, beta2 = _unit_interval(beta1, "beta1"), _unit_interval(beta2, "beta2")
    eps = check.real_scalar(eps, "eps", low=0, low_open=True)
    momentum_decay = check.real_scalar(momentum_decay, "momentum_decay", low=0)
    return _update(OPTIMIZERS["nadam"], param, grad, {"m": m, "v": v}, step, lr, beta1=beta1,
                   beta2=beta2, eps=eps, momentum_decay=momentum_decay, clip_value=clip_value,
                   grad_scale=grad_scale)
