"""Which turns keep an image's class, measured on the features a run caches anyway: `symmetry="auto"`.

A photo has an up: a dog upside down is a strange photo, and ImageNet features say so. An aerial
scene, a blood smear or a texture has none: turned by 90 degrees or flipped upside down it is still
the same class, and training on those turns (`symmetry="dihedral"`, `tl_keras.data.augment`) shows
the model views it would otherwise never see.

The test: a linear probe (ridge regression on standardised features, one-hot targets) fitted on the
training images' cached features classifies up to `MAX_IMAGES` val images (a seeded sample) upright
(their cached features) and turned by 90 degrees and upside down (two more backbone passes over the
sample). When the turned views keep at least `TURNED_OVER_UPRIGHT` of the upright accuracy above
chance, the domain has no up and the run trains with every turn; else with mirror images only. Both
turns count: materials photos keep their class upside down (0.994) but not turned by 90 degrees
(0.852).

The threshold comes from `benchmarks/feature_checks.py` (docs/benchmarks/features.md), which measures
this ratio on all val images of the five shared sets: 0.917 hymenoptera, 0.891 flowers, 0.923
materials (photos: they have an up), 0.991 aerial scenes, 0.981 blood cells (no up); a ridge probe
with 10x the penalty and a logistic regression give 0.880-0.950 and 0.986-0.999. 0.965 is midway
between the highest photo set and the lowest set without an up. A sample of 512 images keeps the
ratio within +-0.01 on the aerial set (5-95% of 300 samples); 256 would spread it to +-0.02. Below
`MIN_IMAGES` val images the ratio is too noisy to tell (hymenoptera's 153 photos, through a weak
96 px 0.35 backbone, scored 1.14: turned views "better" than upright), so the run keeps mirror images.

Examples:
    >>> check = measure_symmetry(model, folder, features)  # doctest: +SKIP
    >>> check.chosen, round(check.ratio, 3)  # doctest: +SKIP
    ('dihedral', 0.991)
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from tl_keras.config import TrainConfig
from tl_keras.data.folder import ImageFolder
from tl_keras.training.caches import FeatureSet, feature_extractor
from tl_keras.utils.ridge import fit_ridge

TURNED_OVER_UPRIGHT = 0.965
MAX_IMAGES = 512
MIN_IMAGES = 200
_MAX_PROBE_ROWS = 20_000
_VIEWS = {"turned 90 degrees": lambda x: tf.image.rot90(x, 1), "upside down": tf.image.flip_up_down}


@dataclasses.dataclass
class SymmetryCheck:
    """What `measure_symmetry` found: the probe's val accuracy upright and per turned view, on `images`
    val images, and the symmetry chosen from it (or why it was not measured)."""

    chosen: str
    upright: float | None = None
    turned: dict[str, float] = dataclasses.field(default_factory=dict)
    chance: float | None = None
    images: int = 0
    seconds: float = 0.0
    reason: str | None = None

    @property
    def ratio(self) -> float | None:
        """Turned over upright accuracy, each above chance (1.0: the turns change nothing)."""
        if self.upright is None or self.upright <= self.chance:
            return None
        return (float(np.mean(list(self.turned.values()))) - self.chance) / (self.upright - self.chance)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "threshold": TURNED_OVER_UPRIGHT,
                "description": self.describe()}

    def describe(self) -> str:
        if self.ratio is None:
            return f"{self.chosen} ({self.reason})"
        turned = ", ".join(f"{name} {acc:.3f}" for name, acc in self.turned.items())
        return (f"{self.chosen}: a linear probe on the frozen features scored {self.images} val images {self.upright:.3f} "
                f"upright, {turned}; turned / upright above chance {self.ratio:.3f} "
                f"({'>=' if self.chosen == 'dihedral' else '<'} {TURNED_OVER_UPRIGHT})")


def choose_symmetry(config: TrainConfig, model, folder: ImageFolder, features: FeatureSet | None) -> SymmetryCheck:
    """`config.symmetry` resolved: `"auto"` measured on `features` (`measure_symmetry`) when the run
    augments and caches them; a set value, or why it was not measured, recorded as it is."""
    if config.symmetry != "auto":
        return SymmetryCheck(config.symmetry, reason=f"set: symmetry={config.symmetry!r}")
    if config.augment == "none":
        return SymmetryCheck("flip", reason="not measured: the run does not augment (augment='none')")
    if features is None:
        return SymmetryCheck("flip", reason="not measured: phase 1 cached no features (cache_features)")
    return measure_symmetry(model, folder, features)


def ridge_fit(features: np.ndarray, labels: np.ndarray, num_classes: int, penalty: float = 1.0):
    """A ridge classifier (standardised features, one-hot targets, penalty scaled to the features'
    variance per dimension: `tl_keras.utils.ridge.fit_ridge` at one penalty); returns
    `predict(features) -> class indices`."""
    rows, dim = np.shape(features)
    return fit_ridge(features, labels, num_classes, penalties=(penalty * rows / dim,)).predict


def measure_symmetry(model, folder: ImageFolder, features: FeatureSet, max_images: int = MAX_IMAGES) -> SymmetryCheck:
    """Whether `folder`'s classes survive 90-degree turns and upside-down flips (see the module
    docstring): `SymmetryCheck.chosen` is `"dihedral"` or `"flip"`."""
    if folder.multi_label:
        return SymmetryCheck("flip", reason="not measured: multi-label data")
    if len(folder.val) < MIN_IMAGES:
        return SymmetryCheck("flip", reason=f"not measured: {len(folder.val)} val images, fewer than the {MIN_IMAGES} "
                             "the turned / upright ratio needs (set symmetry='dihedral' if your images have no up)")
    started = time.perf_counter()
    rng = np.random.default_rng(folder.seed)
    train, labels = features.train[0], np.asarray(features.train_labels)
    rows = rng.permutation(len(train))[:_MAX_PROBE_ROWS]
    predict = ridge_fit(train[rows], labels[rows], len(folder.class_names))
    sample = np.sort(rng.permutation(len(folder.val))[:max_images])
    val_labels = np.asarray(features.val_labels)[sample]
    upright = float(np.mean(predict(features.val[sample]) == val_labels))
    images = _val_images(folder, sample)
    run = feature_extractor(model)
    turned = {}
    for name, view in _VIEWS.items():
        found = np.concatenate([run(view(tf.constant(images[i:i + 64]))).numpy() for i in range(0, len(images), 64)])
        turned[name] = float(np.mean(predict(found) == val_labels))
    check = SymmetryCheck("flip", upright, turned, 1.0 / len(folder.class_names), len(sample), 0.0)
    ratio = check.ratio
    check.chosen = "dihedral" if ratio is not None and ratio >= TURNED_OVER_UPRIGHT else "flip"
    check.reason = None if ratio is not None else "the probe is at chance upright"
    check.seconds = time.perf_counter() - started
    return check


def _val_images(folder: ImageFolder, rows: np.ndarray) -> np.ndarray:
    """The val images at `rows` (sorted), as the backbone sees them (float32, 0-255)."""
    if folder.val.images is not None:
        return folder.val.images[rows].astype(np.float32)
    wanted, found, start = set(rows.tolist()), [], 0
    for batch, _ in folder.dataset("val", batch_size=64):
        batch = batch.numpy()
        found += [batch[i - start] for i in range(start, start + len(batch)) if i in wanted]
        start += len(batch)
    return np.stack(found).astype(np.float32)
