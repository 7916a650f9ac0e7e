"""`check`: the data check `train` runs, alone, with the backbone's features (the API of
`tl-keras check DATA --backbone B`)."""

from __future__ import annotations

from tl_keras.config import TrainConfig
from tl_keras.data.check import DataCheck, check_labels, checked_folder
from tl_keras.data.folder import ImageFolder
from tl_keras.models.preamble import (
    build_model,
    load_folder,
    release,
    resolve_spec,
    settle,
    source_for,
)
from tl_keras.training.caches import compute_features


def check(data_dir: str | ImageFolder, backbone: str | None = None, *, config: TrainConfig | None = None,
          **overrides) -> tuple[ImageFolder, DataCheck]:
    """The data check `train` runs, alone: `tl-keras check DATA --backbone B`'s API.

    Loads the data as `train` would (every file used or skipped with its reason), finds exact
    duplicates, label conflicts and leaks by content (applying `on_leak` / `on_conflict`), computes
    the backbone's frozen features once and finds the likely label errors on them
    (`tl_keras.data.label_issues`; needs the `labels` extra). For the content checks alone, without
    TensorFlow, use `tl_keras.data.check.check_data` on a loaded folder (`tl-keras check DATA`).

    Args:
        data_dir: what `train` takes: an image folder, a label file or an `ImageFolder`.
        backbone: a backbone as `train` takes it. Defaults to the config's.
        config, **overrides: the `TrainConfig` (`image_size`, `crop_to_aspect_ratio`, `seed`,
            `validation_split`, the label file's columns, `on_leak`, `on_conflict`, ...).

    Returns:
        The `ImageFolder` after the policies, and the `DataCheck`.

    Examples:
        >>> import tl_keras
        >>> folder, found = tl_keras.check("../shared/assets/datasets/hymenoptera",  # doctest: +SKIP
        ...     backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector", image_size=96)
        >>> found.label_check  # doctest: +SKIP
        'cleanlab on out-of-fold probabilities of 398 train and val images'
    """
    config, _ = settle(config, backbone, overrides, data_dir)
    data_dir = source_for(data_dir, config)
    spec = resolve_spec(data_dir, config.replace(cut=None))
    folder = load_folder(data_dir, config, spec)
    folder, found = checked_folder(folder, config.on_leak, config.on_conflict, config.near_duplicate_check)
    model = build_model(spec, folder, config)
    try:
        features = compute_features(model, folder, batch_size=config.batch_size)
    finally:
        release(model)
    return folder, check_labels(found, folder, features)
