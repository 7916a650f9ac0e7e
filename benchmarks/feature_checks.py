"""(n) What the backbone's features say about a data set, measured on every shared set: where to put
the near-duplicate threshold, and which sets keep their labels when rotated or flipped upside down.

Near-duplicates. For each val image: the cosine similarity of its feature vector (Hub MobileNetV2
1.0, 224 px, centred by the training mean) to its nearest *training* image, the distribution of
similarities between distinct images; and to an edited copy of itself (what a copy re-saved by another
site looks like), the distribution of near-duplicates. A threshold between the two separates them.
Each edit is measured alone (10% brighter, the central 90%, JPEG quality 75, 60% and back).

Symmetry. A head (logistic regression on the training features) classifies the val images upright,
rotated by 90, 180 and 270 degrees, and flipped upside down: a domain without an "up" keeps its
accuracy on the turned views; photos lose it.

The rule `symmetry="auto"` applies (tl_keras.tuning.symmetry): a ridge probe's accuracy above
chance on views turned 90 degrees and upside down over upright, on every val image and over samples
of 512 (the most a run measures), and what the rule chooses.

Run:  python benchmarks/feature_checks.py [--datasets hymenoptera flowers aerial_aid ...]
Prints one row per set: the nearest-distinct quantiles, the edited copies' quantiles, the upright vs
turned val accuracy of the frozen features, and the symmetry rule's ratio and choice.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, require, table


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(image)
    w, h = pil.size
    return np.asarray(pil.resize((int(w * scale), int(h * scale))).resize((w, h)))


def _cropped(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    pil = Image.fromarray(image)
    w, h = pil.size
    return np.asarray(pil.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w, h)))


# Copies another site might hold: each edit alone, on the 224 px image the backbone sees.
EDITS = {
    "10% brighter": lambda i: np.clip(i.astype(np.float32) * 1.1, 0, 255),
    "central 90%": _cropped,
    "JPEG q75": lambda i: _jpeg(i, 75),
    "60% and back": lambda i: _resized(i, 0.6),
}


def measure(data: str) -> dict:
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression

    from tl_keras.config import TrainConfig
    from tl_keras.models.preamble import build_model, load_folder, resolve_spec
    from tl_keras.training.caches import feature_extractor

    config = TrainConfig(backbone=HUB_100)
    spec = resolve_spec(data, config)
    folder = load_folder(data, config, spec)
    run = feature_extractor(build_model(spec, folder, config))

    def features(split: str, view=None) -> np.ndarray:
        out = []
        for images, _ in folder.dataset(split, batch_size=64):
            images = images.numpy()
            if view is not None:
                images = np.stack([view(i) for i in images])
            out.append(run(tf.constant(images, tf.float32)).numpy())
        return np.concatenate(out)

    train, val = features("train"), features("val")
    mean = train.mean(0)

    def unit(x):
        x = x - mean
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    nearest = (unit(val) @ unit(train).T).max(1)
    to_copy = {name: (unit(val) * unit(features("val", lambda i, e=edit: e(i.astype(np.uint8))))).sum(1)
               for name, edit in EDITS.items()}
    head = LogisticRegression(max_iter=2000, C=1.0).fit(train, folder.train.labels)
    views = {"upright": val, "rot90": features("val", lambda i: np.rot90(i, 1)),
             "rot180": features("val", lambda i: np.rot90(i, 2)), "rot270": features("val", lambda i: np.rot90(i, 3)),
             "vflip": features("val", lambda i: i[::-1])}
    accuracy = {k: float((head.predict(v) == folder.val.labels).mean()) for k, v in views.items()}
    q = lambda x, p: f"{np.quantile(x, p):.3f}"
    turned = [accuracy[k] for k in ("rot90", "rot180", "rot270", "vflip")]
    return {
        "set": os.path.basename(data), "val": len(val),
        "distinct nearest: median / 99% / max": f"{q(nearest, .5)} / {q(nearest, .99)} / {nearest.max():.3f}",
        "distinct above 0.90": int((nearest > 0.90).sum()),
        **{f"{name}: 1% / median": f"{q(sims, .01)} / {q(sims, .5)}" for name, sims in to_copy.items()},
        "upright acc": f"{accuracy['upright']:.3f}",
        "turned acc: mean (min)": f"{np.mean(turned):.3f} ({min(turned):.3f})",
        "turned / upright": f"{np.mean(turned) / accuracy['upright']:.3f}",
        **_symmetry_rule(train, folder.train.labels, views, folder.val.labels, len(folder.class_names)),
    }


def _symmetry_rule(train, labels, views: dict, val_labels, classes: int) -> dict:
    """The measure `symmetry="auto"` decides on (tl_keras.tuning.symmetry): a ridge probe's accuracy
    above chance, turned 90 degrees and upside down over upright, here on every val image, and the
    spread of that ratio over 300 samples of 512 (what a run measures on larger sets)."""
    from tl_keras.tuning.symmetry import MIN_IMAGES, TURNED_OVER_UPRIGHT, ridge_fit

    predict, chance = ridge_fit(train, labels, classes), 1.0 / classes
    right = {k: predict(views[k]) == val_labels for k in ("upright", "rot90", "vflip")}

    def ratio(rows) -> float:
        turned = (right["rot90"][rows].mean() + right["vflip"][rows].mean()) / 2
        return (turned - chance) / (right["upright"][rows].mean() - chance)

    rng = np.random.default_rng(0)
    sampled = [ratio(rng.permutation(len(val_labels))[:512]) for _ in range(300)]
    whole = ratio(np.arange(len(val_labels)))
    return {"rule: ridge ratio above chance": f"{whole:.3f}",
            "over 512-image samples, 5-95%": f"{np.quantile(sampled, .05):.3f}-{np.quantile(sampled, .95):.3f}",
            "auto chooses": "dihedral" if whole >= TURNED_OVER_UPRIGHT and len(val_labels) >= MIN_IMAGES else "flip"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(ALL_DATASETS), choices=list(ALL_DATASETS))
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        with Timer() as t:
            row = measure(require(ALL_DATASETS[name]))
        rows.append({**row, "seconds": f"{t.seconds:.0f}"})
        print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
