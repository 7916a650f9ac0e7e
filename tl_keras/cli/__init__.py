"""The `tl-keras` command line, the only part of tl_keras that parses arguments or prints.

`parser` (commands and flags), `flags` (TrainConfig fields as flags), `commands` (what each
command does), `summary` (what a run prints).

>>> from tl_keras.cli import main
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "COMMANDS": "tl_keras.cli.commands",
    "METAVARS": "tl_keras.cli.flags",
    "READERS": "tl_keras.cli.flags",
    "build_parser": "tl_keras.cli.parser",
    "config_flags": "tl_keras.cli.flags",
    "main": "tl_keras.cli.commands",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
