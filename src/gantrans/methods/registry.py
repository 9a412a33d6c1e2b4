"""The one registry of training methods (torch-free): every `gantrans/methods/*_options.py`
module's option schemas, by method name.

A method is found by its options module alone: the schemas it defines (subclasses of
`MethodConfig` with a `plugin`) are registered under their `name`. The config store, the
checks, `gantrans --help`, the error messages and `gantrans.methods.METHODS` all read this
registry, so a new method is its module, its options, its YAML and its tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from gantrans.errors import ConfigError
from gantrans.methods.options import MethodConfig

OPTIONS_SUFFIX = "_options"


@cache
def schemas() -> dict[str, type[MethodConfig]]:
    """{method name: its options schema}, by their `order`, then name."""
    found: dict[str, type[MethodConfig]] = {}
    here = str(Path(__file__).resolve().parent)
    for info in sorted(pkgutil.iter_modules([here]), key=lambda i: i.name):
        if not info.name.endswith(OPTIONS_SUFFIX):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, MethodConfig)
                and value.__module__ == module.__name__
                and value.plugin
            ):
                if value.name in found:
                    raise RuntimeError(f"two methods are named {value.name!r}")
                found[value.name] = value
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def names() -> list[str]:
    """Every method's name (`method=NAME`)."""
    return list(schemas())


def schema_of(name: str) -> type[MethodConfig]:
    """The options schema of `method=NAME`; a name that is no method: one line naming them."""
    known = schemas()
    if name not in known:
        raise ConfigError(
            f"method={name} is not a training method: choose one of {', '.join(known)}"
        )
    return known[name]


def plugin_class(name: str) -> type:
    """The gantrans.methods.base.Method subclass that trains `method=NAME` (imports torch)."""
    module, _, attr = schema_of(name).plugin.partition(":")
    return getattr(importlib.import_module(module), attr)


def listing(indent: str = "  ") -> str:
    """One line per method, "name  summary", for help texts."""
    width = max(map(len, schemas()))
    return "\n".join(f"{indent}{n:<{width}}  {s.summary}" for n, s in schemas().items())
