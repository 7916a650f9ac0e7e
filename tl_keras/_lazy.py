"""Names a package hands out on first use (PEP 562), so importing a package costs nothing until a
name of it is used: `import tl_keras`, `tl-keras --help` and the label-file checks import no
TensorFlow."""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_names(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: each name of `exports` (name -> module) is imported
    from its module when first read, then kept in the package like any attribute.

    >>> getattr_, dir_ = lazy_names("tl_keras", {"TrainConfig": "tl_keras.config"})
    >>> getattr_("TrainConfig").__name__
    'TrainConfig'
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
