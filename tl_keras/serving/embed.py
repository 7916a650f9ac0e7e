"""Feature extraction mode: one feature vector per image, with its path and label, for users who train
their own classifier on top of a pretrained (or their fine-tuned) backbone.

Examples:
    >>> from tl_keras.serving.embed import embed
    >>> result = embed("../shared/assets/hub/mobilenet_v2_035_224_feature_vector",
    ...                "../shared/assets/datasets/hymenoptera", image_size=96, output="features.npz")  # doctest: +SKIP
    >>> result["features"].shape  # doctest: +SKIP
    (397, 1280)
"""

from __future__ import annotations

import os

import numpy as np

from tl_keras.data.sources import load_data
from tl_keras.export.saved_model import (
    latest_version_dir,
    load_export,
    read_metadata,
    recorded_framing,
)
from tl_keras.models.classifier import build_classifier
from tl_keras.models.registry import resolve_backbone
from tl_keras.training.caches import extract_features, feature_extractor


def _export_extractor(source: str):
    """The `features` function of a tl_keras export and its metadata, or `(None, {})` if `source` is not one."""
    try:
        path = latest_version_dir(source)
    except ValueError:
        return None, {}
    metadata = read_metadata(path)
    if not metadata.get("format", "").startswith("tl_keras/"):
        return None, {}  # a SavedModel, but not a tl_keras export: a backbone (e.g. a TF Hub folder)
    loaded = load_export(path)
    if not hasattr(loaded, "features"):
        raise ValueError(
            f"{path!r} is a SavedModel without a `features` function (exported by an older tl_keras, or not "
            "by tl_keras): export it again, or pass its backbone instead."
        )
    function = loaded.features

    def run(images):
        return function(images)

    run.dim = int(function.get_concrete_function().structured_outputs.shape[-1])
    run.loaded = loaded  # keeps the restored variables alive
    return run, metadata


def embed(
    source: str,
    data_dir: str,
    *,
    output: str | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    batch_size: int = 64,
) -> dict:
    """Feature vectors of every usable image under `data_dir`.

    Args:
        source: a tl_keras export (`NAME/` or `NAME/VERSION/`: its fine-tuned backbone), or any
            backbone `tl_keras.train` takes (registry name, TF Hub/Kaggle handle, local SavedModel
            folder, `keras:` name with `weights`).
        data_dir: an image folder (class subfolders, or train/ val/ [test/] of them).
        output: write a `.npz` there: `features` float32 `[n, dim]`, `paths`, `labels` (index into
            `class_names`), `class_names`, `splits`. Defaults to None (not written).
        image_size: input size. Defaults to the export's, else the backbone's. Images are framed as
            the export's were in training (`crop_to_aspect_ratio`), else as their centred square.
        weights: weights for `keras:` backbones.
        batch_size: images per backbone call. Defaults to 64.

    Returns:
        The arrays above as a dict, plus `skipped_files` (`path`, `reason`) and `source`.
    """
    run, metadata = _export_extractor(source)
    crop, exif = True, True  # photos turned upright by their EXIF tags, unless the export was trained otherwise
    if run is None:
        spec = resolve_backbone(source, weights=weights, image_size=image_size)
        run = feature_extractor(build_classifier(spec, 2))
        size = spec.image_size
    else:
        size = image_size or metadata.get("image_size") or 224
        crop = recorded_framing(metadata)
        exif = bool((metadata.get("config") or {}).get("exif_orientation", True))
    folder = load_data(data_dir, image_size=size, crop_to_aspect_ratio=crop, exif_orientation=exif)
    names = list(folder.splits)
    features = np.concatenate([extract_features(run, folder.dataset(name, batch_size=batch_size)) for name in names])
    by_folder = folder.validation_source == "folder"  # a flat folder's split is tl_keras's, not the user's
    result = {
        "features": features.astype(np.float32),
        "paths": np.array([p for name in names for p in folder.splits[name].paths]),
        "labels": np.concatenate([folder.splits[name].labels for name in names]).astype(np.int32),
        "class_names": np.array(folder.class_names),
        "splits": np.array([name if by_folder else "all" for name in names for _ in folder.splits[name].samples]),
    }
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        np.savez(output, **result)
    return {**result, "skipped_files": [{"path": p, "reason": r} for p, r in folder.skipped], "source": source}
