"""Checking a training config before anything runs, generically.

The type of every key is read from the annotation of its dataclass field, so a field added to a
section is checked without touching this module: ``int`` takes integers (not booleans),
``float`` takes finite numbers, ``bool`` takes ``true``/``false``, ``X | None`` also takes
``null``. Counts and rates are checked against the ranges in :data:`RANGES`. The free-form
``model.network_options`` are checked against the keyword parameters of the network's
constructor (``quotient_diffusion.nn.NETWORKS``). The task section's name and options are
checked by the layer above, which knows the tasks (``quotient_diffusion.tasks``, with
:func:`check_name` and :func:`check_options`: each task reads its options into its ``Options``
dataclass). Every failure is a :class:`ConfigError` whose
one-line message names the key.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping

from ..errors import InputError

__all__ = ["ConfigError", "DEVICES", "RANGES", "check_value", "check_section", "check_name",
           "check_options", "check_choices", "model_differences"]


#: the values of ``run.device`` ('auto': CUDA when torch sees a device, else the CPU)
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(InputError):
    """An invalid training config; the message is one line and names the offending key."""


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _fraction(v: float) -> bool:
    return 0 <= v <= 1


def _seed(v: float) -> bool:
    return 0 <= v <= 2**63 - 1


_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (_positive, "must be positive"),
    "non-negative": (_non_negative, "must not be negative"),
    "fraction": (_fraction, "must lie in [0, 1]"),
    "seed": (_seed, "must lie in [0, 2**63 - 1]"),
}

#: "section.key" -> the range its (non-null) value must lie in
RANGES: dict[str, str] = {
    **dict.fromkeys(("task.limit", "model.hidden", "model.layers", "model.sigma_data",
                     "optim.lr", "optim.batch_size", "optim.max_pairs", "optim.steps",
                     "run.checkpoint_every",
                     "run.validate_every", "run.log_every", "run.checkpoint_minutes",
                     "run.threads"), "positive"),
    **dict.fromkeys(("optim.grad_clip", "optim.weight_decay", "optim.warmup_steps"),
                    "non-negative"),
    **dict.fromkeys(("optim.ema_decay", "optim.min_lr_ratio"), "fraction"),
    "run.seed": "seed",
}

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          dict: "an object", list: "a list", type(None): "null"}
_JSON_NAMES = {bool: "bool", int: "int", float: "float", str: "str", dict: "object",
               list: "list", type(None): "null"}


def _alternatives(annotation: object) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _matches(value: object, kind: object) -> bool:
    if kind is typing.Any:
        return True
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(kind) is typing.Literal:
        return value in typing.get_args(kind)
    origin = typing.get_origin(kind) or kind
    return not isinstance(origin, type) or isinstance(value, origin)


def _describe(kind: object) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(kind))
    origin = typing.get_origin(kind) or kind
    return _NAMES.get(origin, getattr(origin, "__name__", str(origin)))


def check_value(key: str, value: object, annotation: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` fits ``annotation`` and the range of ``key``
    in :data:`RANGES`."""
    kinds = _alternatives(annotation)
    if not any(_matches(value, kind) for kind in kinds):
        got = _JSON_NAMES.get(type(value), type(value).__name__)
        expected = " or ".join(dict.fromkeys(_describe(kind) for kind in kinds))
        raise ConfigError(f"{key}: expected {expected}, got {got}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value}")
    if key in RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
        accept, rule = _RULES[RANGES[key]]
        if not accept(value):
            raise ConfigError(f"{key}: {rule}, got {value}")


def _check_known(where: str, given: Mapping, known: Mapping, what: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown {what} {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(known)) or 'none'}")


def check_section(name: str, klass: type, values: object) -> None:
    """``values`` (a section of the JSON file) can build the dataclass ``klass``."""
    if not isinstance(values, dict):
        got = _JSON_NAMES.get(type(values), type(values).__name__)
        raise ConfigError(f"{name}: expected an object of settings, got {got}")
    hints = typing.get_type_hints(klass)
    _check_known(name, values, {f.name: f for f in dataclasses.fields(klass)}, "key(s)")
    for key, value in values.items():
        check_value(f"{name}.{key}", value, hints[key])


def check_options(where: str, options: Mapping, known: Mapping[str, object], what: str) -> None:
    """Every key of ``options`` (the free-form dict at ``where``) is one of ``known`` (name ->
    annotation; ``what`` describes them in the message) and its value fits the annotation."""
    _check_known(where, options, known, what)
    for key, value in options.items():
        check_value(f"{where}.{key}", value, known[key])


def _network_parameters(network: str) -> dict[str, object] | None:
    """The options a network takes through ``model.network_options`` (name -> annotation):
    the keyword parameters of its constructor that :func:`~quotient_diffusion.nn.get_network`
    does not set itself; None if the constructor takes any keyword."""
    from ..nn import NETWORKS, get_network

    cls = NETWORKS[network]
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    set_by_get_network = set(inspect.signature(get_network).parameters)
    hints = typing.get_type_hints(cls.__init__)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: hints.get(name, typing.Any) for name, p in params.items()
            if p.kind in keyword and name not in set_by_get_network}


def check_name(key: str, name: str, known: Mapping) -> None:
    """``name`` (the value of ``key``) is a key of ``known``."""
    if name not in known:
        raise ConfigError(f"{key}: unknown name {name!r}; choose one of {', '.join(sorted(known))}")


def check_choices(config) -> None:
    """The model's names in a :class:`~.config.TrainConfig` exist (network, treatment, group,
    interpolant), the network's options are ones it reads and ``run.device`` is one of
    :data:`DEVICES`."""
    from ..diffusion.interpolants import get_interpolant
    from ..diffusion.treatments import TREATMENTS
    from ..groups import GROUPS
    from ..nn import NETWORKS

    check_name("model.network", config.model.network, NETWORKS)
    check_name("model.treatment", config.model.treatment, TREATMENTS)
    check_name("model.group", config.model.group, GROUPS)
    try:
        get_interpolant(config.model.interpolant)
    except ValueError as err:
        raise ConfigError(f"model.interpolant: {err}") from None
    known = _network_parameters(config.model.network)
    if known is not None:
        check_options("model.network_options", config.model.network_options, known,
                       f"option(s) for network {config.model.network!r}:")
    if config.run.device not in DEVICES:
        raise ConfigError(f"run.device: unknown device {config.run.device!r}; choose one of "
                          f"{', '.join(DEVICES)}")


def model_differences(saved, new) -> list[str]:
    """What makes the model of config ``new`` differ from that of ``saved`` (both
    :class:`~.config.TrainConfig`): the task name and every key of the model section, as
    ``"model.hidden: 64 in the checkpoint, 32 in the config"``."""
    pairs = {"task.name": (saved.task.name, new.task.name)}
    old_model, new_model = dataclasses.asdict(saved.model), dataclasses.asdict(new.model)
    pairs.update({f"model.{key}": (old_model[key], new_model[key]) for key in old_model})
    return [f"{key}: {a!r} in the checkpoint, {b!r} in the config"
            for key, (a, b) in pairs.items() if a != b]
