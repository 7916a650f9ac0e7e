"""Using an export: predict on image files and evaluate on an image folder, with TensorFlow alone.

Examples:
    >>> from tl_keras.serving import ExportedModel
    >>> model = ExportedModel("saved_models/hymenoptera")   # doctest: +SKIP
    >>> model.predict_files(["ant.jpg"], top_k=2)            # doctest: +SKIP
    [{'path': 'ant.jpg', 'label': 'ants', 'top_k': [['ants', 0.97], ['bees', 0.03]]}]
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from tl_keras.data.sources import load_data
from tl_keras.evaluation.report import classification_report, multi_label_report
from tl_keras.evaluation.tta import flip_averaged
from tl_keras.export.saved_model import (
    latest_version_dir,
    load_export,
    read_labels,
    read_metadata,
    recorded_framing,
)
from tl_keras.images.read import read_images, try_read_images
from tl_keras.utils.batches import run_batches, slices
from tl_keras.utils.checks import require_int


class ExportedModel:
    """A tl_keras export (or any SavedModel with the same `serving_default` signature).

    Args:
        model_dir: `NAME/` (the latest version is used) or `NAME/VERSION/`.
        tta: average each image's probabilities with its mirror image's (`tl_keras.evaluation.tta`) in
            `predict`, `predict_files` and `evaluate`. An export made with `tta=True` does this
            inside its signatures already, and is not averaged twice. Defaults to False.
    """

    def __init__(self, model_dir: str, tta: bool = False):
        self.path = latest_version_dir(model_dir)
        self._loaded = load_export(self.path)
        self._serve = self._loaded.signatures["serving_default"]
        self.class_names = read_labels(self.path)
        metadata = read_metadata(self.path)
        self.image_size = metadata.get("image_size")
        self.crop_to_aspect_ratio = recorded_framing(metadata)  # files are framed as the training images were
        # ... and turned upright by their EXIF tags as they were (exports from before 0.2 record nothing: upright).
        self.exif_orientation = bool((metadata.get("config") or {}).get("exif_orientation", True))
        self.tta_inside = metadata.get("tta") is not None
        self.tta = bool(tta) or self.tta_inside
        # A multi-label export: one probability threshold per class, chosen on val at training.
        thresholds = metadata.get("thresholds")
        self.multi_label = bool(metadata.get("multi_label"))
        self.thresholds = [float(thresholds[name]) for name in self.class_names] if thresholds else None
        self._probabilities = flip_averaged(self._served) if tta and not self.tta_inside else self._served

    def predict(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Class probabilities `[n, num_classes]` for RGB 0-255 images (a batch, or a list of any sizes)."""
        if not (isinstance(images, np.ndarray) and images.ndim == 4) and len({np.shape(i) for i in images}) == 1:
            images = np.stack(images)  # a list of same-size images: batch them
        if isinstance(images, np.ndarray) and images.ndim == 4:
            batches = slices(images, batch_size)
        else:
            batches = [image[None] for image in images]  # differently sized images go one by one
        return run_batches(self._probabilities, batches, len(self.class_names))

    def _served(self, images) -> tf.Tensor:
        return self._serve(images=tf.cast(images, tf.float32))["probabilities"]

    def predict_files(
        self,
        paths: Sequence[str],
        top_k: int = 1,
        *,
        skip_errors: bool = False,
        chunk_size: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[dict]:
        """For each image file: its top-1 `label`, `probability`, and the `top_k` `[class, probability]`
        pairs; for a multi-label export also `labels`, the classes at or above their thresholds.

        Files are decoded in parallel at the export's input size (as in training) and run in batches,
        `chunk_size` files at a time; `progress(done, total)` is called after each chunk. A file that
        cannot be read or decoded raises a `ValueError` naming it, or with `skip_errors=True` gets an
        entry with its `error` instead (and no label), so none goes missing silently.
        """
        require_int("top_k", top_k, 1)
        k = min(top_k, len(self.class_names))
        results: list[dict] = []
        for start in range(0, len(paths), chunk_size):
            chunk = list(paths[start:start + chunk_size])
            if skip_errors:
                images, errors = try_read_images(chunk, self.image_size, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                                                 exif_orientation=self.exif_orientation)
            else:
                images = read_images(chunk, self.image_size, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                                     exif_orientation=self.exif_orientation)
                errors = [None] * len(chunk)
            good = [i for i, image in enumerate(images) if image is not None]
            probabilities = self.predict([images[i] for i in good]) if good else []
            by_index = dict(zip(good, probabilities))
            for i, path in enumerate(chunk):
                if i not in by_index:
                    results.append({"path": path, "error": errors[i]})
                    continue
                p = by_index[i]
                order = np.argsort(-p)[:k]
                results.append({
                    "path": path,
                    "label": self.class_names[order[0]],
                    "probability": float(p[order[0]]),
                    "top_k": [[self.class_names[j], float(p[j])] for j in order],
                    **({"labels": [n for n, q, t in zip(self.class_names, p, self.thresholds) if q >= t]}
                       if self.multi_label else {}),
                })
            if progress is not None:
                progress(min(start + chunk_size, len(paths)), len(paths))
        return results

    def evaluate(
        self, data_dir: str, split: str | None = None, image_size: int | None = None, batch_size: int = 32,
        top_k: int | None = None,
    ) -> dict:
        """Evaluates on a folder's `test/` split (else `val/`, else every image).

        Returns `model_dir`, `data_dir`, `split`, `skipped_files` and the keys of
        `tl_keras.evaluation.classification_report` (of `multi_label_report` for a multi-label export,
        at its thresholds): `accuracy`, `top_k_accuracy`, `per_class`
        precision/recall/F1/support, `confusion_matrix`, `most_confident_errors` (by path), ...

        Images are decoded at `image_size` (default: the export's recorded input size, else 224) and
        framed as in training (`crop_to_aspect_ratio`); the model resizes whatever it gets anyway.
        """
        image_size = image_size or self.image_size or 224
        folder = load_data(data_dir, image_size=image_size, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                           exif_orientation=self.exif_orientation,
                           validation_split=0.5)
        if list(folder.class_names) != list(self.class_names):
            raise ValueError(
                f"The classes of {data_dir!r} ({', '.join(folder.class_names)}) differ from the model's "
                f"({', '.join(self.class_names)})."
            )
        if split is None:
            split = "test" if "test" in folder.splits else ("val" if folder.validation_source == "folder" else None)
        names = [split] if split else list(folder.splits)  # a flat folder: every image
        labels = np.concatenate([folder.splits[name].labels for name in names])
        paths = [p for name in names for p in folder.splits[name].paths]
        probabilities = np.concatenate([self.predict_dataset(folder, name, batch_size) for name in names])
        if self.multi_label:
            report = multi_label_report(labels, probabilities, self.class_names, self.thresholds, paths=paths)
        else:
            report = classification_report(labels, probabilities, self.class_names, paths=paths, top_k=top_k)
        return {
            "model_dir": self.path,
            "data_dir": data_dir,
            "split": split or "all",
            "tta": "flip" if self.tta else None,
            **report,
            "skipped_files": [{"path": p, "reason": r} for p, r in folder.skipped],
        }

    def predict_dataset(self, folder, split: str, batch_size: int = 32) -> np.ndarray:
        ds = folder.dataset(split, batch_size=batch_size, training=False)
        return run_batches(self._probabilities, ds, len(self.class_names), inputs_only=True)
