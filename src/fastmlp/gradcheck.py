"""check_gradients: analytic gradients against centred differences, as the course does.

One function for every level: a loss or an activation kernel of fastmlp.ops, a
NetworkPlan, a fitted MLP, or any function returning (value, gradient). Each entry it
checks costs two evaluations, so it samples a few entries of each parameter array.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from fastmlp import _validation as check
from fastmlp import ops
from fastmlp._registry import ACTIVATIONS, LOSS_ALIASES, LOSSES

# The course's reading of the relative error |a - n| / max(|a|, |n|) in float64.
_VERDICTS = ((1e-7, "correct"), (1e-4, "ok with kinks (relu, hinge), high without"),
             (1e-2, "uncomfortable"), (np.inf, "wrong"))
# Both gradients below this are equal: their relative error is noise over noise.
_TINY = 1e-10


@dataclass
class GradientCheck:
    """What check_gradients found.

    Parameters
    ----------
    errors : dict of str to float
        The worst relative error ``|a - n| / max(|a|, |n|)`` of each array checked
        (analytic a, numerical n), by name: ``"W0"``, ``"b0"``, ... for a network,
        ``"x"`` for a function, ``"logits"``/``"Z"`` for a kernel.
    checked : dict of str to int
        How many entries of each array were compared.
    """

    errors: dict = field(default_factory=dict)
    checked: dict = field(default_factory=dict)

    @property
    def worst(self):
        """The largest relative error over every array (float)."""
        return max(self.errors.values(), default=0.0)

    def __str__(self):
        width = max(map(len, self.errors), default=5)
        lines = [f"{'array':<{width}}  entries  worst relative error"]
        for name, error in self.errors.items():
            verdict = next(text for limit, text in _VERDICTS if error < limit)
            lines.append(f"{name:<{width}}  {self.checked[name]:>7}  {error:.2e}  {verdict}")
        return "\n".join(lines)


def check_gradients(target, X=None, y=None, *, entries=20, rows=8, epsilon=1e-5,
                    sample_weight=None, alpha=None, seed=0):
    """Compare analytic gradients with centred differences.

    For each checked entry ``x_i`` of each array, the numerical derivative is
    ``(f(x + h e_i) - f(x - h e_i)) / 2h`` and the relative error
    ``|a - n| / max(|a|, |n|)``; the worst per array is reported. Read it as the course
    does: below 1e-7 the gradient is right; up to 1e-4 it is fine for a function with
    kinks (relu, hinge) and high for a smooth one (tanh, softmax); above 1e-2 it is
    wrong. Deeper networks add up more rounding.

    Parameters
    ----------
    target : NetworkPlan, MLP, str or callable
        What to check:

        - a :class:`NetworkPlan`: the gradient of its batch loss (penalties included)
          with respect to every W and b, at its current parameters, on the first
          `rows` rows of (X, y), through :meth:`NetworkPlan.loss_and_gradient`;
        - a fitted :class:`MLP`: its network, with X and y as ``fit`` takes them;
        - a loss name of :mod:`fastmlp.ops` (``"softmax_cross_entropy"``, ...): its
          gradient with respect to X, the logits (or predictions), for targets y;
        - an activation name (``"tanh"``, ...): the backward kernel's ``f'(z)``, from
          ``sum(c * f(X))`` with random weights c;
        - a callable ``f(x) -> (value, gradient)``: the gradient of the scalar value
          with respect to the array X, which f must not keep or change.
    X, y : array-like
        The inputs and targets (y: not for an activation or a callable).
    entries : int, default 20
        Entries checked per array, drawn at random without repeats (all of a smaller
        array): two evaluations each.
    rows : int, default 8
        Rows of X used for a network: a few suffice, and the fewer the faster.
    epsilon : float, default 1e-5
        The step h: the course's 1e-5 balances the truncation error (~h²) against the
        rounding of the loss (~1e-16 / h); 1e-6 already shows rounding on small
        gradients. float32 cannot resolve it: check in float64.
    sample_weight : array-like, optional
        Per-row weights, for a network or a loss that takes them.
    alpha : float, optional
        The activation's parameter (leaky_relu, elu; maxout's pieces).
    seed : int, default 0
        Which entries are checked (and the activation's weights c).

    Returns
    -------
    GradientCheck
        ``errors`` (worst relative error per array), ``checked``, ``worst``; printing
        it shows a table with the course's verdicts.

    Notes
    -----
    The caveats of the course notes apply:

    - Use float64. In float32 the differences lose most of their digits (a warning
      says so); build the plan or the model with ``dtype=np.float64``.
    - Kinks: relu, leaky_relu, the absolute error and Huber's corners are not
      differentiable everywhere; an entry whose step crosses a kink (an input within
      epsilon of it) shows a large error that is not a bug. Few rows make that rare.
    - Dropout: the plan's masks depend on the step only, so its loss is a fixed
      function between updates and the check is valid; turning dropout off removes
      doubt all the same.
    - A few rows, and a few entries per array, suffice: an error in a gradient is
      rarely confined to one entry. Check before training as well as after (near the
      start some errors hide in tiny gradients).

    Examples
    --------
    >>> import numpy as np
    >>> import fastmlp
    >>> X, y = fastmlp.datasets.make_spiral(20, 3, seed=0)
    >>> plan = fastmlp.NetworkPlan([2, 16, 3], "tanh", dtype=np.float64, seed=0)
    >>> check = fastmlp.check_gradients(plan, X, y)
    >>> check.worst < 1e-6
    True
    """
    entries = check.positive_int(entries, "entries")
    rows = check.positive_int(rows, "rows")
    epsilon = check.real_scalar(epsilon, "epsilon", low=0, low_open=True)
    rng = np.random.default_rng(seed)
    from fastmlp.model import MLP
    from fastmlp.plan import NetworkPlan

    if isinstance(target, MLP):
        return _check_model(target, X, y, sample_weight, entries, rows, epsilon, rng)
    if isinstance(target, NetworkPlan):
        return _check_plan(target, X, y, sample_weight, entries, rows, epsilon, rng)
    if isinstance(target, str) and LOSS_ALIASES.get(target, target) in LOSSES:
        return _check_loss(LOSS_ALIASES.get(target, target), X, y, sample_weight, entries,
                           epsilon, rng)
    if isinstance(target, str) and target in ACTIVATIONS:
        return _check_activation(target, X, alpha, entries, epsilon, rng)
    if callable(target):
        x = np.array(check.float_array(X, "X"), dtype=np.float64)  # the caller's stays
        report = GradientCheck()
        _compare(report, "x", x, lambda: target(x), entries, epsilon, rng)
        return report
    raise TypeError("target: expected a NetworkPlan, an MLP, a loss or activation name of "
                    f"fastmlp.ops, or a callable; got {target!r}")


def _compare(report, name, x, evaluate, entries, epsilon, rng):
    """Adds to report the worst relative error over `entries` entries of the array x,
    which evaluate() -> (value, gradient) reads (x is changed and put back)."""
    value, gradient = evaluate()
    analytic = np.array(gradient, dtype=np.float64).reshape(-1)  # copied: may be reused
    flat = x.reshape(-1)  # a view: writing it moves what evaluate() sees
    if analytic.shape != flat.shape:
        raise ValueError(f"{name}: the gradient has {analytic.size} entries, the array "
                         f"{flat.size}")
    chosen = rng.choice(flat.size, size=min(entries, flat.size), replace=False)
    worst = 0.0
    for i in chosen:
        kept = flat[i]
        flat[i] = kept + epsilon
        above = float(evaluate()[0])
        flat[i] = kept - epsilon
        below = float(evaluate()[0])
        flat[i] = kept
        numerical = (above - below) / (2 * epsilon)
        scale = max(abs(analytic[i]), abs(numerical))
        if not np.isfinite(scale):
            worst = np.inf
        elif scale > _TINY:
            worst = max(worst, abs(analytic[i] - numerical) / scale)
    report.errors[name] = float(worst)
    report.checked[name] = len(chosen)


def _warn_float32(dtype):
    if np.dtype(dtype) == np.float32:
        warnings.warn("check_gradients: float32 differences keep few digits; relative "
                      "errors near 1e-2 may be rounding. Check in float64.", UserWarning,
                      stacklevel=4)


def _check_plan(plan, X, y, sample_weight, entries, rows, epsilon, rng):
    if X is None or y is None:
        raise TypeError("check_gradients: a network needs X and y")
    n = min(rows, plan.batch_size, len(X))
    X, y = np.asarray(X)[:n], np.asarray(y)[:n]
    w = None if sample_weight is None else np.asarray(sample_weight)[:n]
    _warn_float32(plan.dtype)
    params = plan.parameters
    kept = params.copy()
    report = GradientCheck()
    try:
        # the layout of NetworkPlan.parameters: every W, then every b
        start, offsets = 0, []
        for layer, (W, _) in enumerate(plan.weights):
            offsets.append((f"W{layer}", start, W.size))
            start += W.size
        for layer, (_, b) in enumerate(plan.weights):
            offsets.append((f"b{layer}", start, b.size))
            start += b.size
        for name, first, size in offsets:
            part = params[first:first + size]

            def evaluate(first=first, size=size):
                loss, gradient = plan.loss_and_gradient(X, y, sample_weight=w)
                return loss, gradient[first:first + size]

            _compare(report, name, part, evaluate, entries, epsilon, rng)
    finally:
        params[:] = kept
    return report


def _check_model(model, X, y, sample_weight, entries, rows, epsilon, rng):
    from fastmlp.plan import NetworkPlan

    if getattr(model, "net_", None) is None:
        raise ValueError("check_gradients: the MLP is not fitted (fit it, even for one "
                         "epoch, to build its network)")
    if not isinstance(model.net_, NetworkPlan):
        raise TypeError("check_gradients: a model with batch normalisation trains layer by "
                        "layer and has no one-call gradient to check")
    if X is None or y is None:
        raise TypeError("check_gradients: a model needs X and y")
    X = model._features(X)
    Y = model._encode_targets(y, first=False)
    return _check_plan(model.net_, X, Y, sample_weight, entries, rows, epsilon, rng)


def _check_loss(name, Z, y, sample_weight, entries, epsilon, rng):
    Z = np.array(check.float_array(Z, "X"))  # a copy: the caller's array stays
    _warn_float32(Z.dtype)
    kernel = getattr(ops, name)
    extra = {} if sample_weight is None else {"sample_weight": sample_weight}
    report = GradientCheck()
    array = "scores" if "hinge" in name else "logits" if "entropy" in name or \
        "divergence" in name else "predictions"
    _compare(report, array, Z,
             lambda: kernel(Z, y, **extra), entries, epsilon, rng)
    return report


def _check_activation(name, Z, alpha, entries, epsilon, rng):
    Z = np.array(check.float_array(Z, "X"))
    _warn_float32(Z.dtype)
    # the output's shape (maxout's is narrower than Z)
    shape = ops.activation_forward(name, Z, alpha=alpha).shape
    weights = rng.standard_normal(shape).astype(Z.dtype)

    def evaluate():
        A = ops.activation_forward(name, Z, alpha=alpha)
        value = float(np.sum(weights.astype(np.float64) * A))
        return value, ops.activation_backward(name, weights, A, Z=Z, alpha=alpha)

    report = GradientCheck()
    _compare(report, "Z", Z, evaluate, entries, epsilon, rng)
    return report
