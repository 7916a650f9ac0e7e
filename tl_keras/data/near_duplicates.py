"""Near-duplicates across splits: a val or test image that is a re-saved, resized or re-toned copy of a
training image (not the same bytes, so the content hash of `tl_keras.data.check` misses it), found
by a perceptual hash of the pixels.

Each image's `imagehash.phash` (the signs of the low frequencies of a DCT of the grey image at 64x64:
256 bits) is compared with every training image's; a pair at most `MAX_DISTANCE` bits apart is
reported. The threshold is measured on the five shared sets (`benchmarks/near_duplicates.py`,
docs/benchmarks/features.md): a copy re-saved at JPEG quality 75, shrunk to 60% and back, made 10%
brighter or kept as a 320 px thumbnail stays within 16 bits for 99% of images on every set (30 at
most, outside flowers), while distinct images are at least 76 bits apart on every set except for
two real near-duplicate pairs in flowers (10 and 30 bits). Crops move the hash (a copy cut to its
central 90% is 92-128 bits away) and are not found. Backbone features were measured too and do not
separate copies from distinct images (same page).

Needs `imagehash` (`pip install "tl_keras[dedup]"`); without it the check says so and is skipped.

Examples:
    >>> from tl_keras.data.near_duplicates import find_near_duplicates
    >>> find_near_duplicates(folder)  # doctest: +SKIP
    [{'paths': ['.../val/tulips/2344751399_71620039f2_n.jpg', '.../train/tulips/2333321040_3960b9d67e_n.jpg'],
      'splits': ['val', 'train'], 'distance': 10}]
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tl_keras.data.folder import ImageFolder
from tl_keras.images.pillow import open_reduced
from tl_keras.utils.checks import missing_extra
from tl_keras.utils.progress import Progress

HASH_SIZE = 16  # a 16x16 DCT block: 256 bits
MAX_DISTANCE = 40  # bits of 256; see the module docstring for what it was measured on
_CHUNK = 1024


def missing_library() -> str | None:
    """Why near-duplicates cannot be checked here (imagehash or Pillow not installed), or None."""
    missing = missing_extra("dedup", "imagehash", "PIL")
    return missing and f"near-duplicates not checked: {missing}"


def image_hash(source, pixels: np.ndarray | None = None, exif_orientation: bool = True) -> np.ndarray | None:
    """An image's 256-bit perceptual hash as 0/1 flags, from its file (a path or a binary file
    object; turned upright by its EXIF orientation unless `exif_orientation=False`) or from its
    `pixels` when given; None when it cannot be read."""
    import imagehash

    try:
        image = open_reduced(source, "L", 4 * HASH_SIZE * 4, exif_orientation, pixels)  # at least 256 px
        return imagehash.phash(image, hash_size=HASH_SIZE).hash.reshape(-1)
    except (OSError, ValueError):
        return None


def _hashes(folder: ImageFolder, split: str, bar: Progress, pool: ThreadPoolExecutor) -> tuple[list[str], np.ndarray]:
    """The split's paths and their hashes as +-1 int16 rows (images that cannot be read are left out)."""
    data = folder.splits[split]

    def one(i: int):
        found = image_hash(data.samples[i].path, data.held_pixels(i), folder.exif_orientation)
        bar.advance()
        return found

    found = list(pool.map(one, range(len(data.samples))))
    kept = [i for i, h in enumerate(found) if h is not None]
    signs = np.stack([found[i] for i in kept]).astype(np.int16) * 2 - 1 if kept else np.zeros((0, HASH_SIZE**2), np.int16)
    return [data.samples[i].path for i in kept], signs


def find_near_duplicates(folder: ImageFolder, max_distance: int = MAX_DISTANCE, exact: set[frozenset] = frozenset()) -> list[dict]:
    """Each val or test image within `max_distance` bits of a training image: `{"paths": [evaluated,
    training], "splits": [split, "train"], "distance"}`, closest first. Pairs in `exact` (the same
    bytes, reported as leaks already) are left out."""
    others = [s for s in folder.splits if s != "train"]
    total = sum(len(folder.splits[s]) for s in ["train", *others])
    with Progress("hashing pixels for near-duplicates", total) as bar, ThreadPoolExecutor(min(8, (os.cpu_count() or 2) * 2)) as pool:
        train_paths, train = _hashes(folder, "train", bar, pool)
        found = []
        for split in others:
            paths, signs = _hashes(folder, split, bar, pool)
            for start in range(0, len(paths), _CHUNK):
                distance = (HASH_SIZE**2 - signs[start:start + _CHUNK] @ train.T) // 2
                for i, j in zip(*np.nonzero(distance <= max_distance)):
                    pair = [paths[start + i], train_paths[j]]
                    if frozenset(pair) not in exact:
                        found.append({"paths": pair, "splits": [split, "train"], "distance": int(distance[i, j])})
    return sorted(found, key=lambda f: (f["distance"], f["paths"]))
