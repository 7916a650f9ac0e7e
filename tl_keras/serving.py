"""Using an export: predict on image files and evaluate on an image folder, with TensorFlow alone.

Example:

>>> from tl_keras.serving import ExportedModel
>>> model = ExportedModel("saved_models/hymenoptera")   # doctest: +SKIP
>>> model.predict_files(["ant.jpg"], top_k=2)            # doctest: +SKIP
[{'path': 'ant.jpg', 'label': 'ants', 'top_k': [['ants', 0.97], ['bees', 0.03]]}]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from tl_keras.data import load_image_folder, read_images
from tl_keras.export import latest_version_dir, read_labels, read_metadata


class ExportedModel:
    """A tl_keras export (or any SavedModel with the same `serving_default` signature).

    Args:
        model_dir: `NAME/` (the latest version is used) or `NAME/VERSION/`.
    """

    def __init__(self, model_dir: str):
        self.path = latest_version_dir(model_dir)
        self._loaded = tf.saved_model.load(self.path)
        self._serve = self._loaded.signatures["serving_default"]
        self.class_names = read_labels(self.path)
        self.image_size = read_metadata(self.path).get("image_size")

    def predict(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Class probabilities `[n, num_classes]` for RGB 0-255 images (a batch, or a list of any sizes)."""
        if not (isinstance(images, np.ndarray) and images.ndim == 4) and len({np.shape(i) for i in images}) == 1:
            images = np.stack(images)  # a list of same-size images: batch them
        if isinstance(images, np.ndarray) and images.ndim == 4:
            batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        else:
            batches = [image[None] for image in images]  # differently sized images go one by one
        outputs = [self._serve(images=tf.constant(b, tf.float32))["probabilities"].numpy() for b in batches]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.class_names)), np.float32)

    def predict_files(self, paths: Sequence[str], top_k: int = 1) -> list[dict]:
        """For each image file: its top-1 `label` and the `top_k` `[class, probability]` pairs.

        Files are decoded in parallel at the export's input size (as in training) and run in batches.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be a positive integer. Received: top_k={top_k!r}")
        probabilities = self.predict(read_images(paths, self.image_size))
        k = min(top_k, len(self.class_names))
        results = []
        for path, p in zip(paths, probabilities):
            order = np.argsort(-p)[:k]
            results.append({
                "path": path,
                "label": self.class_names[order[0]],
                "top_k": [[self.class_names[i], float(p[i])] for i in order],
            })
        return results

    def evaluate(self, data_dir: str, split: str | None = None, image_size: int | None = None, batch_size: int = 32) -> dict:
        """Accuracy on a folder's `test/` split (else `val/`, else every image), plus skips and counts.

        Images are decoded at `image_size` (default: the export's recorded input size, else 224), as in
        training; the model resizes whatever it gets anyway.
        """
        image_size = image_size or self.image_size or 224
        folder = load_image_folder(data_dir, image_size=image_size, validation_split=0.5)
        if list(folder.class_names) != list(self.class_names):
            raise ValueError(
                f"The classes of {data_dir!r} ({', '.join(folder.class_names)}) differ from the model's "
                f"({', '.join(self.class_names)})."
            )
        if split is None:
            split = "test" if "test" in folder.splits else ("val" if folder.validation_source == "folder" else None)
        names = [split] if split else list(folder.splits)  # a flat folder: every image
        labels = np.concatenate([folder.splits[name].labels for name in names])
        predicted = np.concatenate([np.argmax(self.predict_dataset(folder, name, batch_size), axis=-1) for name in names])
        per_class = {
            name: {"support": int((labels == i).sum()), "accuracy": float((predicted[labels == i] == i).mean()) if (labels == i).any() else None}
            for i, name in enumerate(self.class_names)
        }
        return {
            "model_dir": self.path,
            "data_dir": data_dir,
            "split": split or "all",
            "num_images": int(len(labels)),
            "accuracy": float((predicted == labels).mean()) if len(labels) else None,
            "per_class": per_class,
            "skipped_files": [{"path": p, "reason": r} for p, r in folder.skipped],
        }

    def predict_dataset(self, folder, split: str, batch_size: int = 32) -> np.ndarray:
        ds = folder.dataset(split, batch_size=batch_size, training=False)
        outputs = [self._serve(images=x)["probabilities"].numpy() for x, _ in ds]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.class_names)), np.float32)
