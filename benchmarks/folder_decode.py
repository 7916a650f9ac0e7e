"""Folder decoding: each file decoded and resized in one or two TensorFlow calls (tl_keras) against
the same ops run eagerly one by one (tl_keras before 2026-12-06).

`load_image_folder` decodes every file once, in a pool of threads. Run eagerly, `decode_image`'s
graph code is about fifteen small ops a file (format test, JPEG shape, the reduction choice, the
decode) and the resize four more; each eager op holds Python's GIL while it is dispatched, so the
threads barely overlap. tl_keras now chooses the JPEG reduction in Python and runs the resize as one
compiled graph: the same kernels, so the same pixels (checked here on every image).

Arms, alternating in one process, side by side: `one call` (tl_keras' path) and `op by op` (the
graph code run eagerly, as before). Per dataset: the median seconds of `--repeats` loads of the whole
folder at `--image-size`, their ratio, and whether both arms gave identical pixels.

Run:  python benchmarks/folder_decode.py [--datasets hymenoptera flowers] [--image-size 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, Timer, require, table, warm_file_cache  # noqa: E402


@contextlib.contextmanager
def _op_by_op():
    """Within: the decoders run their graph code eagerly, op by op (the code before)."""
    from tl_keras.images import codec, quality

    saved = codec.decode_image, codec.resize_uint8, quality.resize_uint8
    codec.decode_image = lambda contents, image_size=None, crop=True: codec._decode_image(contents, image_size, crop)
    codec.resize_uint8 = quality.resize_uint8 = lambda image, image_size, crop=True: codec._resize(image, image_size, crop)
    try:
        yield
    finally:
        codec.decode_image, codec.resize_uint8, quality.resize_uint8 = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"], choices=list(ALL_DATASETS))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from tl_keras.data.folder import load_image_folder

    rows = []
    for name in args.datasets:
        data = require(ALL_DATASETS[name])
        warm_file_cache(data)
        load_image_folder(data, image_size=args.image_size)  # traces, imports: not timed
        seconds = {"one call": [], "op by op": []}
        pixels = {}
        for _ in range(args.repeats):
            for arm in seconds:
                with _op_by_op() if arm == "op by op" else contextlib.nullcontext(), Timer() as t:
                    folder = load_image_folder(data, image_size=args.image_size)
                seconds[arm].append(t.seconds)
                pixels[arm] = np.concatenate([folder.train.images, folder.val.images])
        new, old = (float(np.median(seconds[a])) for a in ("one call", "op by op"))
        rows.append({"dataset": name, "images": len(pixels["one call"]), "size": args.image_size,
                     "op by op s": f"{old:.2f}", "one call s": f"{new:.2f}", "speed-up": f"{old / new:.2f}x",
                     "same pixels": bool(np.array_equal(pixels["one call"], pixels["op by op"])),
                     "spread (min-max, one call / op by op)": f"{min(seconds['one call']):.2f}-{max(seconds['one call']):.2f} / "
                                                             f"{min(seconds['op by op']):.2f}-{max(seconds['op by op']):.2f}"})
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
