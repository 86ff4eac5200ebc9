"""Command-line flags declared once, on the config dataclass they fill.

A field that is an option carries its flag name(s), type, help (choices, metavar) in its metadata
(`option(...)`); `add_arguments` makes the argparse flags from the fields and `from_namespace` the
config from the parsed flags, so an option is named in one place (the gateway's config does the
same: server/tsva/server/config.py). Fields without an option are settings of the Python API only.
Imports nothing heavy: the verb modules build their parsers from it.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Callable


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]                 # e.g. ("-o", "--output")
    help: str | None
    type: Callable[[str], Any] | None = None
    choices: tuple | None = None
    metavar: str | None = None
    negate: bool = False                   # a store_true flag that turns the (True) field off: --no-amp

    @property
    def dest(self) -> str:
        """The namespace attribute, as argparse derives it (first long name)."""
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")


def option(*names: str, default: Any = MISSING, help: str | None = None, type: Callable | None = None,
           choices: tuple | None = None, metavar: str | None = None, negate: bool = False,
           default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field that is also a command-line flag."""
    metadata = {"flag": Flag(tuple(names), help, type, choices, metavar, negate)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def shared(default: Any = MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field filled from a flag that other verbs share and declare themselves (same dest name)."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"shared": True})
    return field(default=default, metadata={"shared": True})


def floats(text: str) -> tuple[float, ...]:
    """The type of a comma-separated list of numbers (`--defocus 0.5,1,1.5`)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _default(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def flag_fields(config_cls) -> list[tuple[Field, Flag]]:
    return [(f, f.metadata["flag"]) for f in fields(config_cls) if "flag" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_cls) -> None:
    """One flag per option field, in field order; argparse's default is the field's, so a help
    text's %(default)s shows it."""
    for f, flag in flag_fields(config_cls):
        if flag.negate:
            parser.add_argument(*flag.names, action="store_true", help=flag.help)
            continue
        kwargs = {"default": _default(f), "help": flag.help}
        for name in ("type", "choices", "metavar"):
            if getattr(flag, name) is not None:
                kwargs[name] = getattr(flag, name)
        parser.add_argument(*flag.names, **kwargs)


def from_namespace(config_cls, args: argparse.Namespace, **values: Any):
    """The config of the parsed flags (shared ones by their field name); `values` override."""
    found = {}
    for f in fields(config_cls):
        if "flag" in f.metadata:
            flag: Flag = f.metadata["flag"]
            value = getattr(args, flag.dest)
            found[f.name] = (not value) if flag.negate else value
        elif f.metadata.get("shared") and hasattr(args, f.name):
            found[f.name] = getattr(args, f.name)
    return config_cls(**{**found, **values})
