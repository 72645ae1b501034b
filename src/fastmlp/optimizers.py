"""Optimizer settings for NetworkPlan (and the model API): what to update with, not how.

The update arithmetic lives in the kernels (csrc/kernels/optimizer.inc and its twins);
these small classes only carry validated hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from fastmlp import _validation as check
from fastmlp._registry import OPTIMIZERS

# Arrays of state per parameter array, and what each starts from ("accumulator": Adagrad's
# initial_accumulator_value, else zeros): state1, state2 of the kernels.
_STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2, "rmsprop": 1,
           "adagrad": 1, "adadelta": 2, "adamax": 2, "nadam": 2}


@dataclass
class Optimizer:
    """The hyper-parameters every optimizer accepts; the base of the optimizer classes.

    Use a subclass (:class:`SGD`, :class:`Momentum`, :class:`Nesterov`, :class:`Adam`,
    :class:`AdamW`, :class:`RMSprop`, :class:`Adagrad`, :class:`Adadelta`, :class:`Adamax`,
    :class:`Nadam`) or a name (:func:`get_optimizer`); each reads the hyper-parameters
    its update uses and accepts the others. Every value is checked when the object is
    made (``ValueError`` naming the argument for one out of range or not finite).

    Gradient clipping is an option of every optimizer. A step's gradient of each
    parameter array (the data loss's plus the L2/L1 penalties') is first clipped
    element-wise into ``[-clip_value, clip_value]``, then, with ``clip_norm``, every
    gradient of the network is scaled by ``min(1, clip_norm / ||g||_2)``, the norm taken
    over ALL parameter arrays (weights and biases of every layer, penalties' gradients
    included, after clipping by value); then the optimizer's update runs on that
    gradient. AdamW's decoupled weight decay is not a gradient and is not clipped. A norm
    that is not finite (a NaN or inf gradient) leaves the gradients unscaled. The plan's
    gradient arrays (``dW``, ``db``) keep the unclipped gradients.

    Parameters
    ----------
    learning_rate : float, default 0.01
        The step size, >= 0.
    momentum : float, default 0
        Momentum and Nesterov's velocity decay, in [0, 1).
    beta1, beta2 : float, default 0.9, 0.999
        Adam's, AdamW's, Adamax's and Nadam's decay rates of the first and second moments
        (Adamax: of the infinity norm), in [0, 1).
    eps : float, default 1e-8
        The adaptive optimizers' term added to the denominator (Adadelta: inside both
        square roots), > 0.
    weight_decay : float, default 0
        AdamW's decoupled weight decay, >= 0.
    rho : float, default 0.9
        RMSprop's and Adadelta's decay of the squared averages, in [0, 1).
    initial_accumulator_value : float, default 0
        Adagrad's starting sum of squared gradients, >= 0.
    momentum_decay : float, default 4e-3
        Nadam's ``psi`` in the momentum schedule
        ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * psi))``, >= 0.
    clip_value : float or None, default None
        Clip each gradient element into ``[-clip_value, clip_value]``, > 0.
    clip_norm : float or None, default None
        Scale the gradients so that their global L2 norm is at most this, > 0.

    Attributes
    ----------
    name : str
        The optimizer's name: ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``,
        ``"adamw"``, ``"rmsprop"``, ``"adagrad"``, ``"adadelta"``, ``"adamax"`` or
        ``"nadam"``.
    """

    learning_rate: float = 0.01
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    rho: float = 0.9
    initial_accumulator_value: float = 0.0
    momentum_decay: float = 4e-3
    clip_value: float | None = None
    clip_norm: float | None = None
    name = "sgd"

    def __post_init__(self):
        self.learning_rate = check.real_scalar(self.learning_rate, "learning_rate", low=0)
        self.momentum = check.real_scalar(self.momentum, "momentum", low=0, high=1,
                                          high_open=True)
        self.beta1 = check.real_scalar(self.beta1, "beta1", low=0, high=1, high_open=True)
        self.beta2 = check.real_scalar(self.beta2, "beta2", low=0, high=1, high_open=True)
        self.eps = check.real_scalar(self.eps, "eps", low=0, low_open=True)
        self.weight_decay = check.real_scalar(self.weight_decay, "weight_decay", low=0)
        self.rho = check.real_scalar(self.rho, "rho", low=0, high=1, high_open=True)
        self.initial_accumulator_value = check.real_scalar(
            self.initial_accumulator_value, "initial_accumulator_value", low=0)
        self.momentum_decay = check.real_scalar(self.momentum_decay, "momentum_decay", low=0)
        if self.clip_value is not None:
            self.clip_value = check.real_scalar(self.clip_value, "clip_value", low=0,
                                                low_open=True)
        if self.clip_norm is not None:
            self.clip_norm = check.real_scalar(self.clip_norm, "clip_norm", low=0,
                                               low_open=True)

    @property
    def code(self):
        """The number that selects this update in the backends' kernels (int)."""
        return OPTIMIZERS[self.name]

    @property
    def n_states(self):
        """Arrays of state per parameter array (int).

        None (0, SGD); the velocity (1, momentum and Nesterov); the mean square
        (RMSprop) or sum of squares (Adagrad) of the gradients (1); Adam's, AdamW's and
        Nadam's m and v, Adamax's m and infinity norm u, Adadelta's mean squares of the
        gradients and of the steps (2).
        """
        return _STATES[self.name]

    @property
    def initial_state(self):
        """The value every state array starts from (float): Adagrad's
        initial_accumulator_value, else 0."""
        return self.initial_accumulator_value if self.name == "adagrad" else 0.0


@dataclass
class SGD(Optimizer):
    """Plain gradient descent: ``w -= lr * g``.

    Parameters
    ----------
    learning_rate : float, default 0.01
        The step size, >= 0.
    momentum, beta1, beta2, eps, weight_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    rho, initial_accumulator_value, momentum_decay : float
        Likewise.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
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
    beta1, beta2, eps, weight_decay, rho, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
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
    beta1, beta2, eps, weight_decay, rho, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
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
    momentum, weight_decay, rho, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update (use
        :class:`AdamW` for weight decay).
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
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
    momentum, rho, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
    """

    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    name = "adamw"


@dataclass
class RMSprop(Optimizer):
    """RMSprop (Hinton), in PyTorch's form (without momentum and centring).

    ``v = rho * v + (1 - rho) * g**2``, ``w -= lr * g / (sqrt(v) + eps)``, v from zeros.

    Parameters
    ----------
    learning_rate : float, default 1e-3
        The step size, >= 0 (Keras's default; PyTorch's is 1e-2).
    rho : float, default 0.9
        The decay of the mean square, in [0, 1) (Keras's default; PyTorch's ``alpha``
        is 0.99).
    eps : float, default 1e-8
        Added to the denominator outside the square root, > 0 (PyTorch's; Keras adds
        its 1e-7 inside).
    momentum, beta1, beta2, weight_decay, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
    """

    learning_rate: float = 1e-3
    name = "rmsprop"


@dataclass
class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), in PyTorch's form (without its learning-rate decay).

    ``s += g**2``, ``w -= lr * g / (sqrt(s) + eps)``, s from
    ``initial_accumulator_value``.

    Parameters
    ----------
    learning_rate : float, default 1e-2
        The step size, >= 0 (PyTorch's default; Keras's is 1e-3).
    initial_accumulator_value : float, default 0
        The starting sum of squares, >= 0 (PyTorch's default; Keras's is 0.1).
    eps : float, default 1e-10
        Added to the denominator outside the square root, > 0 (PyTorch's; Keras adds its
        1e-7 inside).
    momentum, beta1, beta2, weight_decay, rho, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
    """

    learning_rate: float = 1e-2
    eps: float = 1e-10
    name = "adagrad"


@dataclass
class Adadelta(Optimizer):
    """Adadelta (Zeiler), as PyTorch and Keras compute it.

    ``v = rho * v + (1 - rho) * g**2``,
    ``d = sqrt(u + eps) / sqrt(v + eps) * g``, ``u = rho * u + (1 - rho) * d**2``,
    ``w -= lr * d``; v and u from zeros.

    Parameters
    ----------
    learning_rate : float, default 1.0
        The step size, >= 0 (PyTorch's default, Zeiler's method; Keras's is 1e-3).
    rho : float, default 0.95
        The decay of both mean squares, in [0, 1) (Keras's and Zeiler's; PyTorch's is
        0.9).
    eps : float, default 1e-6
        Inside both square roots, > 0 (PyTorch's and Zeiler's; Keras's is 1e-7).
    momentum, beta1, beta2, weight_decay, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
    """

    learning_rate: float = 1.0
    rho: float = 0.95
    eps: float = 1e-6
    name = "adadelta"


@dataclass
class Adamax(Optimizer):
    """Adamax, Adam with the infinity norm (Kingma and Ba), in PyTorch's form.

    ``m = beta1 * m + (1 - beta1) * g``, ``u = max(beta2 * u, |g| + eps)``,
    ``w -= lr / (1 - beta1**t) * m / u``; m and u from zeros.

    Parameters
    ----------
    learning_rate : float, default 2e-3
        The step size, >= 0 (PyTorch's default and the paper's; Keras's is 1e-3).
    beta1, beta2 : float, default 0.9, 0.999
        The decay rates of the first moment and of the infinity norm, in [0, 1).
    eps : float, default 1e-8
        Added to ``|g|`` inside the maximum (PyTorch's; Keras adds its 1e-7 to u in the
        denominator), > 0.
    momentum, weight_decay, rho, initial_accumulator_value, momentum_decay : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
    """

    learning_rate: float = 2e-3
    name = "adamax"


@dataclass
class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat), with its momentum schedule, as PyTorch's NAdam.

    ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``,
    ``P_t = mu_1 * ... * mu_t``, ``m = beta1 * m + (1 - beta1) * g``,
    ``v = beta2 * v + (1 - beta2) * g**2``,
    ``w -= lr * ((1 - mu_t) / (1 - P_t) * g + mu_{t+1} / (1 - P_t * mu_{t+1}) * m)
    / (sqrt(v / (1 - beta2**t)) + eps)``.

    Dozat's schedule, ``0.96**(t / 250)``, is also tf.keras's (optimizer_v2, with
    ``m_schedule`` the product ``P_t``); a schedule ``0.96**t`` is ``momentum_decay=1``.

    Parameters
    ----------
    learning_rate : float, default 2e-3
        The step size, >= 0 (PyTorch's and Dozat's; Keras's is 1e-3).
    beta1, beta2 : float, default 0.9, 0.999
        The decay rates of the first and second moments, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0.
    momentum_decay : float, default 4e-3
        ``psi`` of the schedule, >= 0 (Dozat's 1/250, PyTorch's default).
    momentum, weight_decay, rho, initial_accumulator_value : float
        Accepted, as by every :class:`Optimizer`, and not used by this update.
    clip_value, clip_norm : float or None, default None
        Gradient clipping by value and by global norm (see :class:`Optimizer`).
    """

    learning_rate: float = 2e-3
    name = "nadam"


_BY_NAME = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW, RMSprop, Adagrad,
                                      Adadelta, Adamax, Nadam)}


def nadam_mu(beta1, momentum_decay, t):
    """Nadam's momentum at step t: ``beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (float(t) * momentum_decay))


_products = {}  # (beta1, momentum_decay) -> (t, P_t) of the last call


def nadam_mu_product(beta1, momentum_decay, t):
    """``P_t = mu_1 * ... * mu_t`` (float), multiplied in step order as optimizer.inc's
    fm_nadam_mu_product does (the same bits); the last result per schedule is kept, so
    that step after step costs one multiplication."""
    key = (float(beta1), float(momentum_decay))
    start, product = _products.get(key, (0, 1.0))
    if start > t:
        start, product = 0, 1.0
    for i in range(start + 1, t + 1):
        product *= nadam_mu(beta1, momentum_decay, i)
    if len(_products) > 64:
        _products.clear()
    _products[key] = (t, product)
    return product


def get_optimizer(optimizer, **hyper_parameters):
    """An Optimizer from a name or an object.

    Parameters
    ----------
    optimizer : str or Optimizer
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``, ``"adamw"``,
        ``"rmsprop"``, ``"adagrad"``, ``"adadelta"``, ``"adamax"`` or ``"nadam"`` (any
        case), or an :class:`Optimizer`, which is copied.
    **hyper_parameters
        ``learning_rate``, ``momentum``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``,
        ``rho``, ``initial_accumulator_value``, ``momentum_decay``, ``clip_value``,
        ``clip_norm``: set on the named optimizer, or replacing those of the given object
        (in the copy).

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
    >>> get_optimizer("adam", learning_rate=1e-2).learning_rate
    0.01
    >>> get_optimizer("rmsprop", clip_norm=1.0).clip_norm
    1.0
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
