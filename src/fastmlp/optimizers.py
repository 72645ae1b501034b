"""Optimizer settings for NetworkPlan (and the model API): what to update with, not how.

The update arithmetic lives in the kernels (csrc/kernels/optimizer.inc and its twins);
these small classes only carry validated hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from fastmlp import _validation as check
from fastmlp._registry import OPTIMIZERS


@dataclass
class Optimizer:
    """The hyper-parameters every optimizer accepts; the base of the optimizer classes.

    Use a subclass (:class:`SGD`, :class:`Momentum`, :class:`Nesterov`, :class:`Adam`,
    :class:`AdamW`) or a name (:func:`get_optimizer`); each reads the hyper-parameters
    its update uses and accepts the others. Every value is checked when the object is
    made (``ValueError`` for a negative or non-finite one).

    Parameters
    ----------
    learning_rate : float, default 0.01
        The step size, >= 0.
    momentum : float, default 0
        Momentum and Nesterov's velocity decay, in [0, 1).
    beta1, beta2 : float, default 0.9, 0.999
        Adam's decay rates of the first and second moments, in [0, 1).
    eps : float, default 1e-8
        Adam's term added to the denominator, > 0.
    weight_decay : float, default 0
        AdamW's decoupled weight decay, >= 0.

    Attributes
    ----------
    name : str
        The optimizer's name: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or
        ``"adamw"``.
    """

    learning_rate: float = 0.01
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    name = "sgd"

    def __post_init__(self):
        self.learning_rate = check.real_scalar(self.learning_rate, "learning_rate", low=0)
        self.momentum = check.real_scalar(self.momentum, "momentum", low=0, high=1,
                                          high_open=True)
        self.beta1 = check.real_scalar(self.beta1, "beta1", low=0, high=1, high_open=True)
        self.beta2 = check.real_scalar(self.beta2, "beta2", low=0, high=1, high_open=True)
        self.eps = check.real_scalar(self.eps, "eps", low=0, low_open=True)
        self.weight_decay = check.real_scalar(self.weight_decay, "weight_decay", low=0)

    @property
    def code(self):
        """The number that selects this update in the backends' kernels (int)."""
        return OPTIMIZERS[self.name]

    @property
    def n_states(self):
        """Arrays of state per parameter array (int).

        None (0, SGD), the velocity (1, momentum and Nesterov) or Adam's m and v (2).
        """
        return {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2}[self.name]


@dataclass
class SGD(Optimizer):
    """Plain gradient descent: ``w -= lr * g``.

    Parameters
    ----------
    learning_rate : float, default 0.01
        The step size, >= 0.
    momentum, beta1, beta2, eps, weight_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    """

    name = "sgd"


@dataclass
class Momentum(Optimizer):
    """Gradient descent with momentum: ``v = momentum * v - lr * g; w += v``.

    Parameters
    ----------
    learning_rate : float, default 0.01
        The step size, >= 0.
    momentum : float, default 0.9
        The velocity's decay, in [0, 1).
    beta1, beta2, eps, weight_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    """

    momentum: float = 0.9
    name = "momentum"


@dataclass
class Nesterov(Optimizer):
    """Nesterov's momentum: ``v = momentum * v - lr * g; w += momentum * v - lr * g``.

    Parameters
    ----------
    learning_rate : float, default 0.01
        The step size, >= 0.
    momentum : float, default 0.9
        The velocity's decay, in [0, 1).
    beta1, beta2, eps, weight_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    """

    momentum: float = 0.9
    name = "nesterov"


@dataclass
class Adam(Optimizer):
    """Adam with bias correction (Kingma and Ba).

    ``m = beta1 * m + (1 - beta1) * g``, ``v = beta2 * v + (1 - beta2) * g**2``,
    ``w -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1**t)`` and
    ``v_hat = v / (1 - beta2**t)``.

    Parameters
    ----------
    learning_rate : float, default 1e-3
        The step size, >= 0.
    beta1, beta2 : float, default 0.9, 0.999
        The decay rates of the first and second moments, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    momentum, weight_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update (use
        :class:`AdamW` for weight decay).
    """

    learning_rate: float = 1e-3
    name = "adam"


@dataclass
class AdamW(Optimizer):
    """Adam with decoupled weight decay on the weights (Loshchilov and Hutter).

    Each step first shrinks the weights (not the biases), ``w *= 1 - lr * weight_decay``,
    then takes Adam's step.

    Parameters
    ----------
    learning_rate : float, default 1e-3
        The step size, >= 0.
    beta1, beta2 : float, default 0.9, 0.999
        The decay rates of the first and second moments, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    weight_decay : float, default 1e-2
        The decoupled weight decay, >= 0.
    momentum : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    """

    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    name = "adamw"


_BY_NAME = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW)}


def get_optimizer(optimizer, **hyper_parameters):
    """An Optimizer from a name or an object.

    Parameters
    ----------
    optimizer : str or Optimizer
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or ``"adamw"`` (any case), or
        an :class:`Optimizer`, which is copied.
    **hyper_parameters
        ``learning_rate``, ``momentum``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``:
        set on the named optimizer, or replacing those of the given object (in the
        copy).

    Returns
    -------
    Optimizer
        A new object.

    Raises
    ------
    ValueError
        For an unknown name or an invalid value.
    TypeError
        For an unknown hyper-parameter.

    Examples
    --------
    >>> from fastmlp.optimizers import get_optimizer
    >>> get_optimizer("adam", learning_rate=1e-2)
    Adam(learning_rate=0.01, momentum=0.0, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0)
    """
    if isinstance(optimizer, Optimizer):
        values = {f.name: getattr(optimizer, f.name) for f in fields(optimizer)}
        values.update(hyper_parameters)
        return type(optimizer)(**values)
    key = optimizer.lower() if isinstance(optimizer, str) else optimizer
    if key not in _BY_NAME:
        raise ValueError(f"optimizer: unknown {optimizer!r}; expected one of {list(_BY_NAME)}")
    known = {f.name for f in fields(Optimizer)}
    unknown = set(hyper_parameters) - known
    if unknown:
        raise TypeError(f"optimizer: unknown hyper-parameters {sorted(unknown)}")
    return _BY_NAME[key](**hyper_parameters)
