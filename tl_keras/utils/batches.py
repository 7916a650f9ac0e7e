"""Run a function over batches and stack the results: one helper for every predict-like loop.

No TensorFlow here: `fn` may return tensors (anything `np.asarray` takes).

>>> import numpy as np
>>> from tl_keras.utils.batches import run_batches, slices
>>> run_batches(lambda x: x * 2, slices(np.arange(5.0)[:, None], 2), width=1).ravel()
array([0., 2., 4., 6., 8.])
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np

from tl_keras.utils.progress import Progress


class _Silent:
    """A stream that is no terminal: a `Progress` on it draws nothing."""

    def isatty(self) -> bool:
        return False


def slices(array: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive batches of `array`'s first axis."""
    for start in range(0, len(array), batch_size):
        yield array[start:start + batch_size]


def run_batches(fn: Callable[[Any], Any], batches: Iterable, width: int | tuple[int, ...], *,
                inputs_only: bool = False, progress: str | None = None) -> np.ndarray:
    """`fn(batch)` for every batch, concatenated along the first axis as float32 `[n, width]`
    (`[0, width]` when there is no batch; `width` may be a shape, as `(7, 7, 160)`). `inputs_only`: the batches are `(inputs, labels)` pairs, as
    tl_keras datasets give them, and `fn` takes the inputs. `progress`: a label for a progress line
    on stderr counting the rows done (`tl_keras.utils.progress`).

    A `tf.function` run over a `tf.data.Dataset` is traced once, for the dataset's element spec
    (batch size left free), rather than for the first batch's shape and again for the smaller
    last batch."""
    spec = getattr(batches, "element_spec", None)
    if spec is not None and hasattr(fn, "get_concrete_function"):
        fn = fn.get_concrete_function(spec[0] if inputs_only else spec)
    out = []
    with Progress(progress or "", stream=None if progress else _Silent()) as bar:
        for batch in batches:
            out.append(np.asarray(fn(batch[0] if inputs_only else batch)))
            bar.advance(len(out[-1]))
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros((0, *np.atleast_1d(width)), np.float32)
