"""The decoding engines by name, and their options as a command line or a draft states them.

Three engines share one interface (:class:`model.generation.Engine`): ``ar``
(:mod:`model.autoregressive`), ``diffusion-multistep`` and ``diffusion-onestep``
(:mod:`model.sampling`). ``ENGINES`` lists them; :func:`get_engine` builds one from its name
and options, checked against the options its constructor takes.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from model.autoregressive import AREngine
from model.generation import Engine, EngineError

__all__ = ["ENGINES", "EngineError", "get_engine", "option_defaults", "parse_engine_options"]
from model.sampling import MultiStepEngine, OneStepEngine

ENGINES: dict[str, Callable[..., Engine]] = {
    "ar": AREngine,
    "diffusion-multistep": MultiStepEngine,
    "diffusion-onestep": OneStepEngine,
}


def parse_engine_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items -> {key: value}; values are read as JSON where they parse (``2``,
    ``0.5``, ``false``), else kept as text, and the engine checks them when it is built."""
    options: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals or not key or not text:
            raise EngineError(f"an engine option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def check_option_names(name: str, options: dict[str, Any]) -> None:
    """Refuse an option the engine does not take, naming the ones it does.

    A name meant for another engine (``steps`` is the multi-step sampler's) would otherwise
    reach the constructor and fail with Python's "unexpected keyword argument".
    """
    known = option_defaults(ENGINES[name])
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise EngineError(
            f"engine {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(known)}"
        )


def check_option_types(name: str, options: dict[str, Any]) -> None:
    """Refuse an option whose value is not of the type the engine declares for it.

    Options come as text from a command line or the environment, and a wrong type would
    otherwise pass silently (``report_ngrams=maybe`` is a true string) or fail mid-decode
    (``steps=2.5``).
    """
    declared = typing.get_type_hints(ENGINES[name].__init__)
    for key, value in options.items():
        kinds = typing.get_args(declared[key]) or (declared[key],)
        if not any(value_fits(value, kind) for kind in kinds):
            names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
            raise EngineError(f"option {key!r} of engine {name!r} takes {names}, got {value!r}")


def value_fits(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # bool is an int: a flag takes only true/false, a number never
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def get_engine(name: str, **options: Any) -> Engine:
    """Build the engine ``name`` with ``options``; an unknown name, an option it does not take
    or a value of the wrong type is an ``EngineError`` that names what it takes."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; available: {sorted(ENGINES)}")
    check_option_names(name, options)
    check_option_types(name, options)
    engine = ENGINES[name](**options)
    engine.options = option_defaults(ENGINES[name]) | options
    return engine


def option_defaults(factory: Callable[..., Engine]) -> dict[str, Any]:
    """Every option an engine's constructor takes, with its default, in signature order.

    A draft records these with the options given over them: the same weights decode differently
    under other options, and a default can change between versions; recording every option, not
    only those given, keeps a draft's provenance (and the UIDs derived from it) exact.
    """
    parameters = inspect.signature(factory).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
