"""One run, one value: `TrainConfig` holds every setting of a training run.

`tl_keras.train` keywords, the `tl-keras train` flags, the checkpoint's settings check, the metrics'
`"config"` key and every export's `assets/tl_keras.json` are views of this one frozen dataclass. Each
setting is defined here once, with its default, its validation and its help text (the CLI builds its
flags from the field metadata). This module imports no TensorFlow.

Examples:
    >>> from tl_keras.config import TrainConfig
    >>> config = TrainConfig(head_epochs=10, image_size=160)
    >>> config.replace(learning_rate=5e-4).fine_tune_lr
    5e-05
    >>> TrainConfig.from_dict(config.to_dict()) == config
    True
    >>> TrainConfig(dropout=1.5)
    Traceback (most recent call last):
    ...
    ValueError: `dropout` must be in [0, 1). Received: dropout=1.5
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import numbers
import os
from typing import Any, Callable

from tl_keras.utils.checks import require_int

# Each transfer plan, defined once: the `TrainConfig` values it sets (`TrainConfig.with_plan` applies
# them; values the user set win). The measured parts are the advisor's: where to cut (the best-probing
# block) and, for medium data, how many top blocks.
FINE_TUNE_ALL_DECAY = 0.8
FINE_TUNE_ALL_HIDDEN = (512,)
PLANS: dict[str, dict] = {
    "head-only": {"unfreeze_blocks": 0},
    "cut": {"unfreeze_blocks": 0},  # `cut`: the block the user names, else the best-probing one
    "top-blocks": {},  # the backbone's default number of top blocks
    "fine-tune-all": {"unfreeze_blocks": "all", "hidden_units": FINE_TUNE_ALL_HIDDEN, "layer_decay": FINE_TUNE_ALL_DECAY},
}
FORMAT = "tl_keras.TrainConfig/1"
FINE_TUNE_LR_FACTOR = 0.1
SCHEDULES = ("auto", "constant", "cosine", "warmup-cosine")
TRANSFERS = ("auto",) + tuple(PLANS)
# The distributions a name rebuilds. `distribute` may also hold "custom": a `tf.distribute.Strategy`
# object was passed to `train`, which no name rebuilds (tl_keras.distribute.distribution_name).
DISTRIBUTIONS = ("auto", "default", "mirrored", "multi-worker")
AUGMENTS = ("none", "light", "strong")
# Which turns of an image keep its class: "flip" (a mirror image: photos, which have an up),
# "dihedral" (also 90-degree turns and upside down: aerial scenes, micrographs, textures), or "auto"
# (measured by the run: see tl_keras.tuning.symmetry). Dihedral adds TURNS to the augment policy.
SYMMETRIES = ("auto", "flip", "dihedral")
TURNS = "+turns"
HEAD_INITS = ("auto", "ridge", "random", "prototypes")
DATA_POLICIES = ("warn", "drop", "error")  # what to do with leaks and label conflicts: see tl_keras.data.check  # see tl_keras.data.augment


def _number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
            open_low: bool = False, open_high: bool = False, text: str | None = None) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value < high if open_high else value <= high
    if not ok:
        if text is None:
            text = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"`{name}` must be {text}. Received: {name}={value!r}")
    return float(value)


def _one_of(name: str, value: Any, choices: tuple) -> Any:
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}. Received: {name}={value!r}")
    return value


def _optional(check: Callable) -> Callable:
    return lambda name, value: None if value is None else check(name, value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{name}` must be a non-empty string. Received: {name}={value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def augment_policy(value: Any, name: str = "augment") -> str:
    """An augmentation policy by name; `True` (the older boolean setting) is `"light"`, `False` `"none"`."""
    if value is True or value is False:
        return "light" if value else "none"
    if isinstance(value, str) and value.endswith(TURNS) and value != "none" + TURNS:  # what `augmentation` composes
        return _one_of(name, value[: -len(TURNS)], AUGMENTS) + TURNS
    return _one_of(name, value, AUGMENTS)


def _hidden_units(name: str, value: Any) -> tuple[int, ...]:
    try:
        return tuple(require_int(name, u, 1) for u in value)
    except (TypeError, ValueError):
        raise ValueError(f"`hidden_units` must be positive integers, e.g. (512,). Received: hidden_units={value!r}") from None


def _class_weight(name: str, value: Any) -> str | dict[int, float]:
    if value == "auto":
        return value
    if isinstance(value, dict):
        try:
            weights = {int(k): float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            weights = None
        if weights is not None and all(w >= 0 for w in weights.values()):
            return weights
    raise ValueError(f"`class_weight` must be None, 'auto' or a dict. Received: class_weight={value!r}")


def parse_unfreeze_blocks(value: int | str | None) -> int | str | None:
    """Validates an `unfreeze_blocks` value: a non-negative int, `"all"`, or None (the spec default)."""
    if value is None or value == "all":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    try:
        return require_int("unfreeze_blocks", value)
    except ValueError:
        raise ValueError(
            f"`unfreeze_blocks` must be a non-negative integer or 'all'. Received: unfreeze_blocks={value!r}"
        ) from None


SEARCH = "search"


def parse_unfreeze_setting(value) -> int | str | tuple[int, ...] | None:
    """Validates `TrainConfig.unfreeze_blocks`: what `parse_unfreeze_blocks` takes, or a depth search:
    `"search"` (the depths `search_depths` picks) or several block counts (`(2, 5, 8)`, `"2,5,8"`),
    returned sorted as a tuple. One count in a list is that count."""
    if value == SEARCH:
        return value
    items = value.split(",") if isinstance(value, str) and "," in value else value
    if not isinstance(items, (list, tuple)):
        try:
            return parse_unfreeze_blocks(value)
        except ValueError:
            raise ValueError("`unfreeze_blocks` must be a non-negative integer, 'all', 'search', or block counts "
                             f"to search like '2,5,8'. Received: unfreeze_blocks={value!r}") from None
    items = [v.strip() if isinstance(v, str) else v for v in items]
    try:
        depths = tuple(sorted({require_int("unfreeze_blocks", int(v) if isinstance(v, str) else v) for v in items if v != ""}))
    except ValueError:
        depths = ()
    if not depths or depths[0] < 1:
        raise ValueError("`unfreeze_blocks` as a search takes block counts of at least 1, like (2, 5, 8) or "
                         f"'2,5,8', or 'search' for the default ladder. Received: unfreeze_blocks={value!r}")
    return depths if len(depths) > 1 else depths[0]


def is_search(setting) -> bool:
    """Whether an `unfreeze_blocks` setting asks for a depth search."""
    return setting == SEARCH or isinstance(setting, tuple)


def search_depths(setting: int | str | tuple[int, ...] | None, default: int | str, num_blocks: int) -> list[int | str | None]:
    """The phase-2 depths a run tries: one (the setting itself, None for the default) unless
    `setting` is a search. `"search"` tries half the default, the default and one and a half times
    it (MobileNetV2: 4, 8, 12), capped at the blocks there are."""
    if not is_search(setting):
        return [setting]
    if isinstance(setting, tuple):
        return list(dict.fromkeys(min(d, num_blocks) for d in setting))
    base = num_blocks if default == "all" else min(int(default), num_blocks)
    return sorted({max(1, base // 2), base, min(num_blocks, base + base // 2)})


def setting(default: Any, help: str, check: Callable, *, flag: str | None = None, read: str | None = None,
            choices: tuple | None = None, metavar: str | None = None, switch: str | None = None) -> Any:
    """A `TrainConfig` field: its default, help text, check, and how the CLI reads it.

    `read` names the CLI's text reader (`"int"`, `"float"`, `"str"`, `"units"`, `"blocks"`,
    `"auto-on-off"`); `switch` makes a boolean flag: `"both"` (`--x` / `--no-x`) or `"off"` (the
    flag, e.g. `--no-feature-cache`, sets False); `"policy"` is a named choice whose flag alone means
    the default's choice and whose `--no-x` means the first choice (`--augment`, `--no-augment`).
    """
    metadata = {"help": help, "check": check, "flag": flag, "read": read, "choices": choices,
                "metavar": metavar, "switch": switch}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a `tl_keras.train` run, validated once, serialisable to JSON.

    Build one with keywords, `replace` fields, save it with `to_dict` / `save`, rebuild it with
    `from_dict` / `load` (an export's `assets/tl_keras.json` works too: its `"config"` is read).
    Fields left at None (`image_size`, `cut`, `hidden_units`, `unfreeze_blocks`, `layer_decay`, ...)
    mean "the backbone's default, the transfer plan's, or what the run measures" (`image_size`:
    the training photos' size); values you set win over a plan's.

    Examples:
        >>> config = TrainConfig(backbone="keras:mobilenet_v2", head_epochs=3, transfer="head-only")
        >>> config.to_dict()["head_epochs"]
        3
    """

    # The backbone and the head.
    backbone: str = setting("mobilenet_v2", "registry name (mobilenet_v2, resnet50, keras:mobilenet_v2, keras:resnet50, hub:mobilenet_v2_035), keras_hub:PRESET_OR_FOLDER (a Keras-Hub preset), TF Hub/Kaggle handle or URL, or local SavedModel folder", _text, read="str")
    weights: str | None = setting(None, "weights for keras: backbones: imagenet, none, or a .h5 file", _optional(_text), read="str", metavar="H5")
    image_size: int | None = setting(None, "input size (default: from the training photos' median short side, a multiple of 32 from the backbone's 224 to 384)", _optional(lambda n, v: require_int(n, v, 32)), read="int")
    exif_orientation: bool = setting(True, "turn each photo upright by its EXIF orientation tag (phones store photos sideways with a tag) in training, predict, evaluate and embed; --no-exif-orientation keeps the stored pixels", _bool, switch="both")
    crop_to_aspect_ratio: bool = setting(True, "frame each image as its centred square (the full short side) before the resize, in training and in every export; --no-crop-to-aspect-ratio squeezes whole images", _bool, switch="both")
    cut: str | None = setting(None, "cut the backbone at this block (block_12) or layer; its pooled output is the features", _optional(_text), read="str", metavar="BLOCK")
    hidden_units: tuple[int, ...] | None = setting(None, "hidden ReLU layers in the head, e.g. 512 or 512,256 (default: none, or the transfer plan's)", _optional(_hidden_units), read="units", metavar="N[,N]")
    normalize_features: bool | None = setting(None, "standardise the backbone's features (training mean and variance) before the head (default: on for a cut backbone)", _optional(_bool), switch="both")
    dropout: float = setting(0.2, "dropout before the output layer", lambda n, v: _number(n, v, 0.0, 1.0, open_high=True), read="float")
    l2: float = setting(0.0, "L2 penalty on the output layer", lambda n, v: _number(n, v, 0.0, text=">= 0"), read="float")
    head_init: str = setting("auto", "how phase 1's softmax head starts: ridge (the least-squares classifier of the cached features, its penalty and softmax temperature chosen by leave-one-out on the training images; see tl_keras.training.head_init), prototypes (each class's weights from its mean cached feature: the nearest-class-mean classifier), random (Keras' initialisation), auto (ridge where it applies: a softmax head without hidden layers on cached features; else random)", lambda n, v: _one_of(n, v, HEAD_INITS), read="str", choices=HEAD_INITS)
    label_smoothing: float = setting(0.0, "label smoothing", lambda n, v: _number(n, v, 0.0, 1.0, open_high=True), read="float")
    # The two phases.
    head_epochs: int = setting(20, "phase 1 epochs, backbone frozen", require_int, read="int")
    fine_tune_epochs: int = setting(10, "phase 2 epochs, top blocks unfrozen", require_int, read="int")
    unfreeze_blocks: int | str | tuple[int, ...] | None = setting(None, "top blocks trained in phase 2: N or 'all' (default: the backbone's, e.g. MobileNetV2's 8, or 12 where the run measured no up, symmetry dihedral; or the transfer plan's); 'search' or N,N,.. tries each depth from the head's weights and keeps the one with the best val_loss", _optional(lambda n, v: parse_unfreeze_setting(v)), read="blocks")
    learning_rate: float = setting(1e-3, "phase 1 learning rate (Adam); phase 2 uses a tenth", lambda n, v: _number(n, v, 0.0, open_low=True, text="> 0"), read="float")
    fine_tune_learning_rate: float | None = setting(None, "phase 2 learning rate (default: learning rate / 10)", _optional(lambda n, v: _number(n, v, 0.0, open_low=True, text="> 0")), read="float")
    fine_tune_schedule: str = setting("auto", "phase 2 learning rate schedule: constant, cosine (decays to 0), warmup-cosine (rises to the phase 2 rate over the first epoch, then decays to 0); auto: warmup-cosine where the run chose symmetry dihedral (a domain far from ImageNet's photos), else constant (see phase_two_schedule; measured in docs/benchmarks/accuracy.md)", lambda n, v: _one_of(n, v, SCHEDULES), read="str", choices=SCHEDULES)
    layer_decay: float | None = setting(None, "phase 2 discriminative learning rates: each block below the top at D times the rate of the one above; 0 trains the top block only", _optional(lambda n, v: _number(n, v, 0.0, 1.0)), read="float", metavar="D")
    early_stopping_patience: int | None = setting(3, "stop a phase after PATIENCE epochs without a better val_loss (0: never; phase 2: see --fine-tune-patience)", _optional(lambda n, v: require_int(n, v, 0)), read="int", flag="--early-stopping", metavar="PATIENCE")
    fine_tune_patience: int | None = setting(None, "phase 2's patience (0: never stop early; default: early_stopping_patience with the constant schedule, none with a schedule that decays the rate to 0, whose last epochs settle it: see patience())", _optional(lambda n, v: require_int(n, v, 0)), read="int", metavar="PATIENCE")
    restore_best: bool = setting(True, "end each phase with its best epoch's weights by val_loss; phase 2 is kept only if it beats the head's best", _bool, switch="both")
    class_weight: str | dict | None = setting(None, "auto: weigh classes by n / (classes * count) for imbalanced folders (the API also takes a dict)", _optional(_class_weight), read="str", choices=("auto",))
    # Data.
    batch_size: int = setting(32, "per-replica batch size", lambda n, v: require_int(n, v, 1), read="int")
    validation_split: float = setting(0.2, "held-out fraction when there is no val/ folder", lambda n, v: _number(n, v, 0.0, 1.0, open_low=True, open_high=True), read="float")
    on_leak: str = setting("warn", "an image in train and in val/test (the same bytes): warn (report it), drop (its train copies) or error", lambda n, v: _one_of(n, v, DATA_POLICIES), read="str", choices=DATA_POLICIES)
    on_conflict: str = setting("warn", "an image under two classes (the same bytes): warn, drop (every copy) or error", lambda n, v: _one_of(n, v, DATA_POLICIES), read="str", choices=DATA_POLICIES)
    near_duplicate_check: bool = setting(True, "report val/test images that look like a training image without being the same bytes (re-saved, resized, re-toned copies; a perceptual hash, the dedup extra); --no-near-duplicate-check skips it", _bool, switch="both")
    label_check: bool = setting(True, "list likely label errors (cleanlab, the labels extra) from out-of-fold probabilities of a linear head on the features phase 1 caches (measured: 5 s on 20,000 images, 45 s on 100,000); --no-label-check skips it", _bool, switch="both")
    path_column: str | None = setting(None, "a label file's column naming each image (default: path); Kaggle's labels.csv: id", _optional(_text), read="str", metavar="COL")
    label_column: str | None = setting(None, "a label file's column holding each image's label (default: label); Kaggle's dog breeds: breed", _optional(_text), read="str", metavar="COL")
    path_format: str | None = setting(None, "how a path-column value becomes an image path relative to the label file, {} for the value, e.g. 'train/{}.jpg'", _optional(_text), read="str", metavar="FMT")
    augment: str = setting("light", "training augmentation: none; light (flip, a crop of 0.8-1.0 of the side); strong (light, then Keras RandAugment per image and MixUp or CutMix per batch; see tl_keras.data.augment). --augment alone is light, --no-augment none", lambda n, v: augment_policy(v, n), read="str", choices=AUGMENTS, switch="policy")
    symmetry: str = setting("auto", "which turns keep an image's class, added to the augmentation: flip (a mirror image, for photos), dihedral (also 90-degree turns and upside down: aerial, microscopy, textures); auto measures it (frozen features of turned val images still classified as upright ones: dihedral, see tl_keras.tuning.symmetry)", lambda n, v: _one_of(n, v, SYMMETRIES), read="str", choices=SYMMETRIES)
    seed: int = setting(42, "random seed; with op determinism two runs give identical weights on CPU", require_int, read="int")
    deterministic: bool = setting(True, "TensorFlow op determinism (some GPU ops have no deterministic kernel: turn it off there)", _bool, switch="both")
    tta: bool = setting(False, "test-time augmentation: the final report and the exported signatures average each image's probabilities with its mirror image's (twice the compute)", _bool, switch="both")
    # Speed.
    cache_features: bool | str = setting("auto", "train phase 1 on backbone features computed once (auto: whenever it saves backbone passes)", lambda n, v: _one_of(n, v, (True, False, "auto")), flag="--no-feature-cache", switch="off")
    feature_cache_dir: str | None = setting(None, "keep phase 1 features on disk across runs (keyed by backbone weights, image size, file content)", _optional(_text), read="str", metavar="DIR")
    feature_copies: int = setting(0, "cache K augmented variants per training image; 0 caches un-augmented images and augments in phase 2 only", require_int, read="int", metavar="K")
    cache_boundary: bool | str = setting("auto", "train phase 2's unfrozen blocks on the frozen blocks' output computed once (auto: when the backbone splits there and it fits in half the free memory)", lambda n, v: _one_of(n, v, (True, False, "auto")), flag="--no-boundary-cache", switch="off")
    boundary_views: int = setting(2, "with augmentation, phase 2's boundary cache holds K augmented views per training image; each epoch picks one", lambda n, v: require_int(n, v, 1), read="int", metavar="K")
    mixed_precision: bool = setting(False, "mixed_float16 on GPU (mixed_bfloat16 on TPU); a no-op with a warning on CPU", _bool, switch="both")
    jit_compile: bool | str = setting("auto", "XLA: auto is on for GPU/TPU without tf.distribute, off on CPU", lambda n, v: _one_of(n, v, (True, False, "auto")), read="auto-on-off", metavar="{auto,on,off}")
    # What to reuse, and where to run.
    transfer: str | None = setting(None, "transfer-learning plan: auto (measure size x similarity and choose, see `tl-keras advise`), head-only, cut, top-blocks, fine-tune-all (default: the two-phase fit as configured)", _optional(lambda n, v: _one_of(n, v, TRANSFERS)), read="str", choices=TRANSFERS)
    distribute: str = setting("auto", "tf.distribute strategy: auto (TF_CONFIG -> multi-worker, several GPUs -> mirrored), default, mirrored, multi-worker", lambda n, v: _one_of(n, v, DISTRIBUTIONS + ("custom",)), read="str", choices=DISTRIBUTIONS)
    compare_scratch: bool = setting(False, "also train the same architecture from random weights on the same splits and epochs; report both", _bool, switch="both")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = field.metadata["check"](field.name, getattr(self, field.name))
            if value is not None and value is not getattr(self, field.name):
                object.__setattr__(self, field.name, value)  # normalised: lists -> tuples, "3" -> 3
        if self.head_epochs + self.fine_tune_epochs == 0:
            raise ValueError("`head_epochs` and `fine_tune_epochs` are both 0: there is nothing to train.")

    @classmethod
    def check(cls, name: str, value: Any) -> Any:
        """Validates one setting alone (the CLI checks each flag as it reads it); returns it normalised."""
        field = _fields().get(name)
        if field is None:
            raise _unknown(name)
        checked = field.metadata["check"](name, value)
        return value if checked is None else checked

    @property
    def fine_tune_lr(self) -> float:
        """The phase-2 learning rate: `fine_tune_learning_rate`, else a tenth of `learning_rate`."""
        if self.fine_tune_learning_rate is not None:
            return self.fine_tune_learning_rate
        return self.learning_rate * FINE_TUNE_LR_FACTOR

    def patience(self, phase: int) -> int | None:
        """Phase `phase`'s early-stopping patience, None for none. Phase 2 takes `fine_tune_patience`,
        else none under a decaying schedule: its rate falls to 0 at the end, where it settles (measured
        on aerial scenes: val_loss rises for 3 epochs after unfreezing, then falls below the head's),
        so an early stop would end it before it gains; `restore_best` still keeps the head if it loses.

        Examples:
            >>> TrainConfig(fine_tune_schedule="cosine").patience(2), TrainConfig(fine_tune_schedule="constant").patience(2)
            (None, 3)
        """
        if phase == 2 and self.fine_tune_patience is not None:
            return self.fine_tune_patience or None
        if phase == 2 and self.phase_two_schedule != "constant":
            return None
        return self.early_stopping_patience or None

    @property
    def phase_two_schedule(self) -> str:
        """Phase 2's learning-rate schedule: `fine_tune_schedule`, or for `"auto"`, `"warmup-cosine"`
        when `symmetry` is `"dihedral"` (the run measured a domain with no "up": aerial scenes,
        microscopy), else `"constant"`. Far from ImageNet's photos phase 2 must move the top blocks
        further: `val_loss` first rises, and a rate decayed to 0 over every epoch settles it (aerial
        scenes +0.019, blood cells +0.014, 3 seeds); on photos a long phase 2 over-fits (flowers -0.010),
        so there it stays a constant tenth, stopped early.

        Examples:
            >>> TrainConfig(symmetry="dihedral").phase_two_schedule, TrainConfig(symmetry="flip").phase_two_schedule
            ('warmup-cosine', 'constant')
        """
        if self.fine_tune_schedule != "auto":
            return self.fine_tune_schedule
        return "warmup-cosine" if self.symmetry == "dihedral" else "constant"

    @property
    def augmentation(self) -> str:
        """The policy the training pipelines run: `augment`, with 90-degree turns and vertical flips
        added (`"+turns"`) when `symmetry` is `"dihedral"` and the run augments."""
        return self.augment + TURNS if self.symmetry == "dihedral" and self.augment != "none" else self.augment

    def replace(self, **overrides) -> "TrainConfig":
        """A copy with `overrides` applied (validated). `strategy=` is the older name of `transfer=`
        and `distribute=` (it takes either's values); an unknown name is an error that names it."""
        overrides = split_strategy(overrides)
        fields = _fields()
        for name in overrides:
            if name not in fields:
                raise _unknown(name)
        return dataclasses.replace(self, **overrides)

    def with_plan(self, plan: dict) -> "TrainConfig":
        """Applies a transfer plan (`tl_keras.tuning.advisor.PLANS` or `Advice.train_options()`): values set
        on this config win; the plan fills the rest. A plan that fine-tunes nothing gives the head
        the whole epoch budget."""
        config = self.replace(**{k: v for k, v in plan.items() if getattr(self, k) is None})
        if config.unfreeze_blocks == 0 and config.fine_tune_epochs:
            config = config.replace(head_epochs=config.head_epochs + config.fine_tune_epochs, fine_tune_epochs=0)
        return config

    def to_dict(self) -> dict:
        """JSON-able: `{"format": ..., field: value, ...}` (tuples as lists, class weights by str index)."""
        out: dict[str, Any] = {"format": FORMAT}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = {str(k): v for k, v in value.items()}
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Rebuilds a config from `to_dict`'s output. An unknown key or format is an error naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"A TrainConfig must be read from a JSON object. Received: {type(data).__name__}")
        data = dict(data)
        version = data.pop("format", FORMAT)
        if version != FORMAT:
            raise ValueError(f"Unknown TrainConfig format {version!r}; this tl_keras reads {FORMAT!r}.")
        fields = _fields()
        for name in data:
            if name not in fields:
                raise _unknown(name)
        if data and "crop_to_aspect_ratio" not in data:
            data["crop_to_aspect_ratio"] = False  # a config saved before the setting existed: squeezed images
        return cls(**data)

    def save(self, path: str) -> str:
        """Writes `to_dict()` as JSON to `path`; returns `path`."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        return path

    @classmethod
    def load(cls, path: str) -> "TrainConfig":
        """Reads a config JSON, or an export's `assets/tl_keras.json` (its `"config"` key)."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"No config file at {path!r}: pass a JSON file written by --save-config or an export's assets/tl_keras.json.") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"The config file {path!r} is not valid JSON: {err}") from None
        if isinstance(data, dict) and "config" in data:
            data = data["config"]
            if data is None:
                raise ValueError(f"{path!r} records no training config (an export made without tl_keras.train).")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def split_strategy(overrides: dict) -> dict:
    """Maps the older `strategy=` keyword to `transfer=` (a plan) or `distribute=` (a distribution)."""
    if "strategy" not in overrides:
        return overrides
    overrides = dict(overrides)
    strategy = overrides.pop("strategy")
    if strategy is None:
        return overrides
    if strategy in DISTRIBUTIONS[1:] or strategy == "custom":
        if overrides.get("distribute") not in (None, "auto"):
            raise ValueError(
                f"`strategy={strategy!r}` picks the distribution, and so does "
                f"`distribute={overrides['distribute']!r}`: pass one."
            )
        overrides["distribute"] = strategy
    elif strategy in TRANSFERS:
        overrides["transfer"] = strategy
    else:
        raise ValueError(
            f"`strategy` must be a transfer-learning strategy ({', '.join(TRANSFERS)}), a distribution "
            f"({', '.join(DISTRIBUTIONS[1:])}) or a tf.distribute.Strategy. Received: strategy={strategy!r}"
        )
    return overrides


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_fields()), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"Unknown training setting {name!r}.{hint} Settings: {', '.join(_fields())}.")
