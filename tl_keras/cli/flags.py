"""`TrainConfig` fields as command-line flags: each field's flag, reader and help come from its
`setting(...)` metadata, so the CLI and the config cannot drift apart; `config_flags` turns a config
back into the flags that rerun it."""

from __future__ import annotations

import argparse
import dataclasses

from tl_keras.config import TrainConfig
from tl_keras.utils.checks import require_int


def _positive_int(text: str) -> int:
    try:
        return require_int("value", int(text), 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None


def _blocks(text: str) -> int | str:
    return text if text == "all" else int(text) if text.strip().isdigit() else text


def _units(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers like 512 or 512,256, got {text!r}") from None


# How the CLI reads each kind of TrainConfig field from text (the field's metadata names the kind).
READERS = {"int": int, "float": float, "str": str, "units": _units, "blocks": _blocks,
           "auto-on-off": lambda text: {"auto": "auto", "on": True, "off": False}[text]}


METAVARS = {"int": "N", "float": "X", "blocks": "N|all|search|N,N,.."}


def _reader(name: str, kind: str):
    """Reads a flag's text as TrainConfig field `name` and checks it there (one set of rules)."""
    def read(text: str):
        try:
            value = READERS[kind](text)
        except (ValueError, KeyError):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}") from None
        try:
            return TrainConfig.check(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    read.__name__ = name  # argparse names the type in some messages
    return read


def _flag(field) -> str:
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def _config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per TrainConfig field (or the fields in `only`), generated from the field's metadata.
    Every flag defaults to "not given", so only the flags on the command line override `--config`."""
    group = parser.add_argument_group("training settings (TrainConfig; given flags override --config)")
    for field in dataclasses.fields(TrainConfig):
        if only is not None and field.name not in only:
            continue
        meta = field.metadata
        default = "" if field.default is None else f" (default: {_text(field.default)})"
        common = {"dest": field.name, "default": argparse.SUPPRESS, "help": meta["help"] + default}
        if meta["switch"] == "both":
            group.add_argument(_flag(field), action=argparse.BooleanOptionalAction, **common)
        elif meta["switch"] == "off":
            group.add_argument(_flag(field), action="store_const", const=False, **common)
        elif meta["switch"] == "policy":  # --augment [POLICY] (alone: the default's), --no-augment: the first choice
            group.add_argument(_flag(field), nargs="?", const=field.default, type=_reader(field.name, meta["read"]),
                               choices=meta["choices"], **common)
            group.add_argument("--no-" + _flag(field)[2:], action="store_const", const=meta["choices"][0],
                               dest=field.name, default=argparse.SUPPRESS, help=f"the same as {_flag(field)} {meta['choices'][0]}")
        else:
            group.add_argument(_flag(field), type=_reader(field.name, meta["read"]), choices=meta["choices"],
                               metavar=meta["metavar"] or METAVARS.get(meta["read"]), **common)
    group.add_argument("--config", metavar="FILE", help="read the settings from FILE: a config JSON (--save-config) or an export's assets/tl_keras.json")


def _text(value) -> str:
    """A setting's value as a flag writes it."""
    if value is True or value is False:
        return {True: "on", False: "off"}[value]
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_flags(config: TrainConfig, names: tuple[str, ...] | None = None) -> list[str]:
    """The `tl-keras train` flags that set `config`'s values that differ from the defaults (of the
    fields `names`, in that order; default: all fields)."""
    flags = []
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for field in [fields[name] for name in names] if names is not None else fields.values():
        value = getattr(config, field.name)
        if value == field.default or isinstance(value, dict):
            continue
        switch = field.metadata["switch"]
        if switch == "both":
            flags.append(_flag(field) if value else "--no-" + _flag(field)[2:])
        elif switch == "off":
            flags.append(_flag(field))
        else:
            flags.append(f"{_flag(field)} {_text(value)}")
    return flags
