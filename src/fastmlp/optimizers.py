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
        return OPTIMIZERS[self.name]

    @property
    def n_states(self):
        """Arrays of state per parameter: velocity (1) or Adam's m and v (2)."""
        return {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2}[self.name]


@dataclass
class SGD(Optimizer):
    """``w -= lr g``."""

    name = "sgd"


@dataclass
class Momentum(Optimizer):
    """``v = momentum v - lr g; w += v``."""

    momentum: float = 0.9
    name = "momentum"


@dataclass
class Nesterov(Optimizer):
    """``v = momentum v - lr g; w += momentum v - lr g``."""

    momentum: float = 0.9
    name = "nesterov"


@dataclass
class Adam(Optimizer):
    """Adam with bias correction (Kingma and Ba)."""

    learning_rate: float = 1e-3
    name = "adam"


@dataclass
class AdamW(Optimizer):
    """Adam with decoupled weight decay on the weights (Loshchilov and Hutter)."""

    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    name = "adamw"


_BY_NAME = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, AdamW)}


def get_optimizer(optimizer, **hyper_parameters):
    """An Optimizer from a name ("sgd", "momentum", "nesterov", "adam", "adamw") or object.

    Keyword arguments (learning_rate, momentum, beta1, beta2, eps, weight_decay) set the
    hyper-parameters of a named optimizer, or replace those of a given object (a copy).
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
