"""PNG pictures from a real run (looked at by eye when written; here checked to be real pictures)."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf


def _png(path):
    with open(path, "rb") as f:
        return tf.io.decode_png(f.read()).numpy()


def test_train_writes_curves_confusion_and_misclassified_pictures(flowers_result):
    folder = flowers_result.plots_dir
    assert sorted(os.listdir(folder)) == ["confusion_val.png", "curves.png", "misclassified_val.png"]
    for name, min_size in (("curves.png", (300, 700)), ("confusion_val.png", (300, 300)), ("misclassified_val.png", (500, 500))):
        image = _png(os.path.join(folder, name))
        assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1], name
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50, name  # drawn, not blank


def test_pictures_need_matplotlib_and_say_how_to_get_it(monkeypatch, flowers_result, tmp_path):
    from tl_keras.evaluation import plots

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"tl_keras\[plots\]"):
        plots.plot_confusion_matrix(flowers_result.metrics["evaluation"]["val"], str(tmp_path / "c.png"))


def test_evaluate_cli_writes_pictures_for_the_split(flowers_result, tmp_path):
    from tl_keras.cli.commands import main

    assert main(["evaluate", flowers_result.export_dir, flowers_result.data.root, "--plots", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["confusion_val.png", "misclassified_val.png"]
