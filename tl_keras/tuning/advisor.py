"""The transfer-learning strategy advisor: measure where a dataset falls on size x similarity, then choose.

The practice (the shared transfer-learning notes; Yosinski et al. 2014): with little data similar to the pretraining data, train only the
head; with little dissimilar data, keep the early, general layers (cut the backbone in the middle) and
train a head on those; with more data, unfreeze more, up to fine-tuning everything. `advise` measures
both axes and picks one of four plans:

- **size**: training images per class (the smallest class), counted by listing files.
  small < `SMALL_PER_CLASS` (500) <= medium < `LARGE_PER_CLASS` (2000) <= large.
- **similarity** (a cheap proxy, measured in seconds): *linear-probe accuracy* of the frozen backbone's
  features at three depths (a third of the way up, two thirds, and the full feature vector) on a
  sample of the images (up to `per_class` per class from train and as many from val, pooled). The
  probe is a ridge classifier on standardised, average-pooled features, its penalty chosen by
  leave-one-out on each training fold, scored by 5-fold cross-validation. If the top features probe
  better than every earlier layer (by more than `TOLERANCE`) and at least halfway from chance to perfect
  (chance-corrected accuracy >= `MIN_TOP_KAPPA`), the pretraining domain's top features fit the task:
  *similar*. Otherwise the top layers are too specific to the pretraining task (Yosinski et al.):
  *dissimilar*. The depth profile decides: the top must probe better than every earlier depth by more
  than `TOLERANCE`; a middle block probing as well as the top means the top layers add nothing here.

Plans: small + similar -> `head-only`; small + dissimilar -> `cut` at the best-probing block if it
beats the top features by more than `CUT_MARGIN`, `top-blocks` if it probes as well as the top
(within `TOLERANCE`: the top is domain-specific, fine-tune it; phase 2 is kept only if it beats the
head), else `head-only` (the top is weak but still the best there is);
medium -> `top-blocks` (the backbone's default number of top blocks; twice that if dissimilar);
large -> `fine-tune-all` with discriminative learning rates and a hidden layer in the head (for large
and dissimilar data, compare with training from scratch: `--compare-scratch`).

Examples:
    >>> from tl_keras.tuning.advisor import advise
    >>> advice = advise("../shared/assets/datasets/hymenoptera",
    ...                 backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector", image_size=96)
    >>> advice.strategy, advice.train_options()  # doctest: +SKIP
    ('head-only', {'unfreeze_blocks': 0, 'cut': None, 'hidden_units': (), 'layer_decay': None})
    >>> print(advice.describe())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tl_keras.config import (
    FINE_TUNE_ALL_DECAY,
    FINE_TUNE_ALL_HIDDEN,
    PLANS,
    TrainConfig,
)
from tl_keras.data.sources import check_source, count_images
from tl_keras.models.backbones.applications import build_backbone
from tl_keras.models.preamble import absolute_paths, load_folder, release, resolve_spec
from tl_keras.models.registry import (
    BackboneSpec,
    CutUnsupportedError,
    default_unfreeze,
)
from tl_keras.utils.batches import run_batches, slices
from tl_keras.utils.ridge import fit_ridge

STRATEGIES = tuple(PLANS)
SMALL_PER_CLASS = 500
LARGE_PER_CLASS = 2000
TOLERANCE = 0.03
CUT_MARGIN = 0.05
MIN_TOP_KAPPA = 0.5
DEPTH_FRACTIONS = (1 / 3, 2 / 3)


@dataclasses.dataclass
class Advice:
    """What `advise` measured and chose.

    Attributes:
        strategy: one of `STRATEGIES`.
        images_per_class: training images per class (listed files).
        size: `"small"`, `"medium"` or `"large"` (from the smallest class).
        probes: block name (`"top"` for the full feature vector) -> linear-probe accuracy, bottom first.
        similarity: the chance-corrected probe accuracy of the top features (0 = chance, 1 = perfect).
        similar: whether the data counts as similar to the pretraining domain.
        cut: the block to cut at (`strategy="cut"`), else None.
        unfreeze_blocks: top blocks to fine-tune in phase 2 (0: none, `"all"`).
        hidden_units: hidden layers for the head.
        layer_decay: discriminative learning-rate decay for phase 2, or None.
        reason: why, in a sentence or two.
        seconds: time the measurement took.
    """

    strategy: str
    images_per_class: dict[str, int]
    size: str
    probes: dict[str, float]
    similarity: float
    similar: bool
    cut: str | None
    unfreeze_blocks: int | str
    hidden_units: tuple[int, ...]
    layer_decay: float | None
    reason: str
    seconds: float = 0.0

    def train_options(self) -> dict:
        """The `TrainConfig` values that carry out this plan (`TrainConfig.with_plan` applies them)."""
        return {"unfreeze_blocks": self.unfreeze_blocks, "cut": self.cut, "hidden_units": self.hidden_units,
                "layer_decay": self.layer_decay}

    def measured_options(self) -> dict:
        """The values of `train_options` that the plan's name alone does not imply (the measured cut
        block, a measured number of top blocks): with `transfer=strategy`, these reproduce the plan."""
        implied = {"unfreeze_blocks": 0, "cut": None, "hidden_units": (), "layer_decay": None, **PLANS[self.strategy]}
        return {k: v for k, v in self.train_options().items() if v != implied[k]}

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "hidden_units": list(self.hidden_units)}

    def describe(self) -> str:
        counts = ", ".join(f"{name} {n}" for name, n in self.images_per_class.items())
        probes = ", ".join(f"{name} {acc:.3f}" for name, acc in self.probes.items())
        return "\n".join([
            f"size: {self.size} (training images per class: {counts}; small < {SMALL_PER_CLASS}, large >= {LARGE_PER_CLASS})",
            f"linear-probe accuracy by depth: {probes}",
            f"similarity to the pretraining domain: {self.similarity:.2f} (chance-corrected top probe) -> "
            f"{'similar' if self.similar else 'dissimilar'}",
            f"strategy: {self.strategy}" + (f" at {self.cut}" if self.cut else ""),
            f"why: {self.reason}",
        ])


def plan_for(transfer: str, cut: str | None = None, advice: "Advice | None" = None) -> dict:
    """The `TrainConfig` values of a transfer plan: `PLANS[transfer]`, with the advisor's measured
    values (`advice.train_options()`) for `"auto"`, and for `"cut"` the block `cut` or else the
    block whose features `advice` probed best."""
    if transfer == "auto":
        if advice is None:
            raise ValueError("The 'auto' plan needs the advisor's measurements (`advise`).")
        return advice.train_options()
    plan = dict(PLANS[transfer])
    if transfer == "cut":
        if cut is None and advice is None:
            raise ValueError("The 'cut' plan needs a block (`cut=`) or the advisor's probes (`advise`).")
        plan["cut"] = cut or max((d for d in advice.probes if d != "top"), key=advice.probes.get)
    return plan


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                num_classes: int) -> float:
    """Accuracy of a ridge (least-squares, one-hot targets) classifier trained on `train_x`
    (`tl_keras.utils.ridge.fit_ridge`: standardised with the training statistics, the penalty picked
    by the leave-one-out error on the training set, so the test set never chooses it)."""
    return float(np.mean(fit_ridge(train_x, train_y, num_classes).predict(test_x) == test_y))


def ridge_probe_cv(features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = 5, seed: int = 0) -> float:
    """Mean accuracy of `ridge_probe` over `folds` stratified folds of `features`."""
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), np.int64)
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = np.arange(len(members)) % folds
    scores = [
        ridge_probe(features[fold_of != k], labels[fold_of != k], features[fold_of == k], labels[fold_of == k], num_classes)
        for k in range(folds) if (fold_of == k).any()
    ]
    return float(np.mean(scores))


def _features(backbone, pixel_mode: str, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    import tensorflow as tf

    from tl_keras.models.backbones.applications import PixelRange

    scale = PixelRange(pixel_mode)
    # One trace per probed depth, the last short batch included (a fixed batch size would trace twice,
    # and TensorFlow warns of retracing when a loop over depths traces five times).
    spec = tf.TensorSpec((None, *images.shape[1:]), tf.float32)
    run = tf.function(lambda x: backbone(scale(x), training=False), input_signature=[spec])
    return run_batches(lambda batch: run(tf.constant(batch)), slices(images, batch_size), 0)


def probe_depths(block_names: list[str]) -> list[str]:
    """The intermediate blocks probed: a third and two thirds of the way up (the stem excluded)."""
    blocks = [name for name in block_names if name != "stem"] or list(block_names)
    picks = [blocks[max(0, round(f * len(blocks)) - 1)] for f in DEPTH_FRACTIONS]
    return list(dict.fromkeys(p for p in picks if p != blocks[-1]))


def advise(
    data_dir: str,
    backbone: str | BackboneSpec = "mobilenet_v2",
    *,
    weights: str | None = None,
    image_size: int | None = None,
    crop_to_aspect_ratio: bool = True,
    per_class: int = 100,
    depths: list[str] | None = None,
    seed: int = 42,
) -> Advice:
    """Measures a dataset's size and its similarity to the backbone's pretraining, and picks a plan.

    Args:
        data_dir: the image folder (as `tl_keras.train` takes it).
        backbone, weights, image_size, crop_to_aspect_ratio: the backbone and the framing of the
            images, as `tl_keras.train` takes them.
        per_class: images per class and split decoded for the probes. Defaults to 100.
        depths: block names to probe below the top. Defaults to `probe_depths` (two).
        seed: seeds the sample. Defaults to 42.

    Returns:
        An `Advice`; `advice.train_options()` are the `tl_keras.train` arguments that carry it out.
    """
    started = time.perf_counter()
    config = TrainConfig(weights=weights, image_size=image_size, crop_to_aspect_ratio=crop_to_aspect_ratio, seed=seed,
                         **({} if isinstance(backbone, BackboneSpec) else {"backbone": backbone}))
    if isinstance(backbone, BackboneSpec):  # resolved already (by `train`): the data is checked, the spec kept
        check_source(data_dir)
        spec = backbone if image_size is None else backbone.replace(image_size=image_size)
    else:  # the shared preamble: a wrong folder is reported before the backbone is resolved or downloaded
        spec = resolve_spec(data_dir, config)
    counts = count_images(data_dir)
    folder = load_folder(data_dir, config, spec, max_per_class=per_class)
    if folder.multi_label:
        raise ValueError("The advisor's linear probe scores single-label classes; this data is multi-label. "
                         "Choose the plan yourself (--transfer head-only or top-blocks).")
    num_classes = len(folder.class_names)
    train, val = folder.train, folder.val
    if train.images is None or val.images is None:  # pragma: no cover - a sample always fits
        raise ValueError("The probe sample did not fit in memory; lower `per_class`.")

    full = build_backbone(spec.replace(cut=None), inference_mode=True)
    block_names = full.block_names
    depths = list(depths) if depths is not None else probe_depths(block_names)
    images = np.concatenate([train.images, val.images]).astype(np.float32)
    labels = np.concatenate([train.labels, val.labels])
    probes, unprobed = {}, None
    for depth in depths + [None]:
        try:
            layer = full if depth is None else build_backbone(spec.replace(cut=depth), inference_mode=True, share=full)
        except CutUnsupportedError as err:  # a module without per-layer functions: its top only
            unprobed = str(err)
            continue
        features = _features(layer, spec.pixel_mode, images)
        probes[depth or "top"] = ridge_probe_cv(features, labels, num_classes, seed=seed)

    release(full)  # the probes are done: the model trained next reuses its module
    advice = choose_strategy(counts, probes, num_classes, default_unfreeze(spec, block_names), len(block_names))
    if unprobed:
        advice.reason += f" Only the top features were probed: {unprobed.split(':')[0]}, so no cut could be judged."
    advice.seconds = round(time.perf_counter() - started, 2)
    return advice


def choose_strategy(
    counts: dict[str, int], probes: dict[str, float], num_classes: int, default_blocks: int, num_blocks: int
) -> Advice:
    """The decision `advise` makes from its measurements (see the module docstring).

    Args:
        counts: class name -> training images.
        probes: depth -> linear-probe accuracy, bottom first, with `"top"` for the full features.
        num_classes: for the chance level.
        default_blocks: the backbone's default number of top blocks to fine-tune.
        num_blocks: how many blocks the backbone has.
    """
    depths = [d for d in probes if d != "top"]
    top = probes["top"]
    chance = 1.0 / num_classes
    similarity = (top - chance) / (1.0 - chance)
    best_block, best_acc = max(((d, probes[d]) for d in depths), key=lambda kv: kv[1], default=(None, -1.0))
    # The depth profile: the top counts as fitting the task only if it probes clearly better than
    # every block below it. A middle block probing as well as the top means the top layers add
    # nothing for this data: they are specific to the pretraining task.
    similar = top > best_acc + TOLERANCE and similarity >= MIN_TOP_KAPPA
    flat_top = bool(depths) and best_acc >= top - TOLERANCE
    smallest = min(counts.values())
    size = "small" if smallest < SMALL_PER_CLASS else "large" if smallest >= LARGE_PER_CLASS else "medium"

    measured: dict = {}  # what the plan leaves to measurement
    if size == "small" and similar:
        strategy = "head-only"
        reason = (f"few images per class (smallest class {smallest}) and the top features already separate the "
                  f"classes (probe {top:.3f}): fine-tuning would mostly add variance, so only the head trains.")
    elif size == "small":
        if best_acc > top + CUT_MARGIN:
            strategy, measured = "cut", {"cut": best_block}
            reason = (f"few images per class (smallest class {smallest}), and features from {best_block} probe "
                      f"better ({best_acc:.3f}) than the top ones ({top:.3f}): the top layers are specific to the "
                      "pretraining task, so the backbone is cut there and a head trains on those features.")
        elif flat_top:
            strategy, measured = "top-blocks", {"unfreeze_blocks": default_blocks}
            reason = (f"few images per class (smallest class {smallest}), and {best_block} probes as well as the top "
                      f"({best_acc:.3f} vs {top:.3f}): the top layers add nothing for this data, so they are fine-tuned "
                      f"(the top {default_blocks} blocks; phase 2 is kept only if it beats the head on val).")
        else:
            strategy = "head-only"
            reason = (f"few images per class (smallest class {smallest}) and the top features probe weakly "
                      f"({top:.3f}), but no earlier layer does better: the head trains on the top features.")
    elif size == "medium":
        strategy = "top-blocks"
        measured = {"unfreeze_blocks": default_blocks if similar else min(2 * default_blocks, num_blocks)}
        reason = (f"a medium-sized set (smallest class {smallest}): the head, then the top {measured['unfreeze_blocks']} blocks "
                  f"train ({'similar' if similar else 'dissimilar'} data: "
                  f"{'the default' if similar else 'twice the default'} number of blocks).")
    else:
        strategy = "fine-tune-all"
        reason = (f"a large set (smallest class {smallest}): every block fine-tunes, lower blocks at smaller "
                  f"learning rates (layer decay {FINE_TUNE_ALL_DECAY}), with a {FINE_TUNE_ALL_HIDDEN[0]}-unit "
                  "hidden layer in the head"
                  + ("." if similar else "; the data looks dissimilar, so compare with training from scratch "
                     "(--compare-scratch): pretraining may mostly speed up convergence here."))
    options = {"unfreeze_blocks": 0, "cut": None, "hidden_units": (), "layer_decay": None, **PLANS[strategy], **measured}
    return Advice(
        strategy=strategy, images_per_class=counts, size=size, probes=probes, similarity=float(similarity),
        similar=bool(similar), reason=reason, **options,
    )


def resolve_plan(config: TrainConfig, data_dir: str, spec: BackboneSpec) -> tuple[TrainConfig, Advice | None]:
    """The config a run trains with: its transfer plan applied (values the caller set win; `"auto"`
    measures with `tl_keras.tuning.advisor.advise` and becomes the plan it chose), the image size filled in,
    and local backbone and weights paths made absolute, so the result reruns the run anywhere."""
    advice = None
    if config.transfer is not None:
        if config.transfer == "auto" or (config.transfer == "cut" and config.cut is None):
            advice = advise(data_dir, spec.replace(cut=None), seed=config.seed, crop_to_aspect_ratio=config.crop_to_aspect_ratio)
        config = config.with_plan(plan_for(config.transfer, config.cut, advice))
        if config.transfer == "auto":
            config = config.replace(transfer=advice.strategy)
    return absolute_paths(config, spec), advice
