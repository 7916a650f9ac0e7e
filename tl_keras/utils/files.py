"""Files that appear whole or not at all: atomic writes, and the JSON the run state is kept in.

No TensorFlow here: the checkpoint, the feature store and the exports all write through these.

Examples:
    >>> import os, tempfile
    >>> from tl_keras.utils.files import read_json, write_json
    >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
    >>> write_json(path, {"epoch": 3})
    >>> read_json(path)
    {'epoch': 3}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Callable


def atomic_write(path: str, write: Callable) -> None:
    """Writes `path` through `write(file)` into a temporary file beside it, then renames it into place."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, payload: Any) -> None:
    """`payload` as JSON at `path`, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=1, ensure_ascii=False).encode()))


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def file_digest(path: str) -> str:
    """SHA-1 of a file's bytes: the same digest is the same image, whatever its name (the key of its
    cached features, and what the data check groups copies by)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
