"""Argument checks shared by every module (no TensorFlow): errors state the rule, then what was received.

>>> from tl_keras.utils.checks import require_int
>>> require_int("batch_size", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: `batch_size` must be a positive integer. Received: batch_size=0
"""

from __future__ import annotations

import importlib
import numbers
from typing import Any


def require_int(name: str, value: Any, minimum: int = 0) -> int:
    """`value` as an int if it is an integer (a bool is not) >= `minimum`, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"`{name}` must be {kind}. Received: {name}={value!r}")
    return int(value)


def missing_extra(extra: str, *modules: str) -> str | None:
    """`"<module> is not installed (pip install "tl_keras[<extra>]")"` for the first of `modules` that
    cannot be imported, or None when all can."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f'{error.name or module} is not installed (pip install "tl_keras[{extra}]")'
    return None
