"""(o) Can a perceptual hash find near-duplicates across splits where backbone features cannot?
Measured on every shared set with the same edits as feature_checks.py.

For each val image: the Hamming distance of its perceptual hash (`imagehash.phash` as
`tl_keras.data.near_duplicates` computes it: a DCT hash of the grey image; 256 bits, or 64 with
`--hash-size 8`) to its nearest *training* image's
(distinct images), and to an edited copy of itself (a copy another site re-saved: 10% brighter, the
central 90%, JPEG quality 75, 60% and back, and a 320 px thumbnail). A distance below every distinct
pair's and above every copy's separates them. The edits are made at full resolution, as a copy
elsewhere would be.

Run:  python benchmarks/near_duplicates.py [--datasets hymenoptera ...] [--hash-size 8]
Prints one row per set: the distinct images' smallest distances (min, 0.1% and 1% quantiles, and how
many fall at or below each threshold), and each edit's largest distances (max, 99% quantile).
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, Timer, require, table


def _files(root: str, split: str) -> list[str]:
    folder = os.path.join(root, split)
    return sorted(os.path.join(folder, c, n) for c in os.listdir(folder) for n in os.listdir(os.path.join(folder, c)))


def _open(path: str):
    from PIL import Image, ImageOps

    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


def _encoded(image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _edits(image) -> dict[str, bytes]:
    from PIL import ImageEnhance

    w, h = image.size
    small = image.copy()
    small.thumbnail((320, 320))
    return {
        "10% brighter": _encoded(ImageEnhance.Brightness(image).enhance(1.1)),
        "central 90%": _encoded(image.crop((w // 20, h // 20, w - w // 20, h - h // 20))),
        "JPEG q75": _encoded(image, 75),
        "60% and back": _encoded(image.resize((int(w * 0.6), int(h * 0.6))).resize((w, h))),
        "320 px thumbnail": _encoded(small),
    }


def measure(root: str, hash_size: int) -> dict:
    from tl_keras.data import near_duplicates

    near_duplicates.HASH_SIZE = hash_size

    def bits(source) -> np.ndarray:  # as tl_keras hashes each file
        return near_duplicates.image_hash(source)

    train = np.stack([bits(p) for p in _files(root, "train")])
    val_files = _files(root, "val")
    val, copies = [], {}
    for path in val_files:
        val.append(bits(path))
        for name, raw in _edits(_open(path)).items():
            copies.setdefault(name, []).append(bits(io.BytesIO(raw)))
    val = np.stack(val)
    # Hamming distances val x train, through the dot product of +-1 codes.
    signs = lambda b: b.astype(np.int16) * 2 - 1  # noqa: E731
    nearest = ((hash_size**2 - signs(val) @ signs(train).T) // 2).min(1)
    to_copy = {name: (np.stack(c) != val).sum(1) for name, c in copies.items()}
    resaved = max(int(d.max()) for name, d in to_copy.items() if name != "central 90%")  # a crop moves the DCT grid
    return {
        "set": os.path.basename(root), "train/val": f"{len(train)}/{len(val)}",
        "distinct: min / 0.1% / 1%": f"{nearest.min()} / {np.quantile(nearest, .001):.0f} / {np.quantile(nearest, .01):.0f}",
        **{f"{name}: max / 99%": f"{d.max()} / {np.quantile(d, .99):.0f}" for name, d in to_copy.items()},
        "worst re-saved copy (no crop)": resaved,
        f"re-saved copies above {near_duplicates.MAX_DISTANCE} (missed)": f"{sum(int((d > near_duplicates.MAX_DISTANCE).sum()) for n, d in to_copy.items() if n != 'central 90%')} of {4 * len(val)}",
        f"distinct within {near_duplicates.MAX_DISTANCE} (reported)": int((nearest <= near_duplicates.MAX_DISTANCE).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(ALL_DATASETS), choices=list(ALL_DATASETS))
    parser.add_argument("--hash-size", type=int, default=16, help="the hash is hash_size**2 bits (default: 16, tl_keras')")
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        with Timer() as t:
            row = measure(require(ALL_DATASETS[name]), args.hash_size)
        rows.append({**row, "seconds": f"{t.seconds:.0f}"})
        print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
