"""Two-phase fit on the real ants/bees photos with the 0.35 Hub backbone."""

import keras
import numpy as np
import pytest

from conftest import HUB_035, HYMENOPTERA, asset
from tl_keras.classifier import build_classifier
from tl_keras.data import load_image_folder
from tl_keras.training import SmoothedSparseCategoricalCrossentropy, fine_tune


@pytest.fixture(scope="module")
def data():
    folder = load_image_folder(asset(HYMENOPTERA), image_size=64)
    return folder, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=64)


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates, self.snapshots = [], []

    def on_train_begin(self, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.snapshots.append([v.numpy().copy() for v in self.model.backbone.hub_variables])


def test_phase_one_trains_only_the_head_and_phase_two_the_top_blocks(data):
    folder, train_ds, val_ds = data
    keras.utils.set_random_seed(0)
    model = build_classifier(asset(HUB_035), 2, image_size=64, class_names=folder.class_names)
    backbone = model.backbone
    recorder = _Recorder()
    history = fine_tune(model, train_ds, val_ds, head_epochs=2, fine_tune_epochs=1, unfreeze_blocks=2,
                        learning_rate=1e-3, callbacks=[recorder], verbose=0)
    assert recorder.rates == pytest.approx([1e-3, 1e-4])  # phase 2 at a tenth
    start, after_head = recorder.snapshots
    assert all(np.array_equal(a, b) for a, b in zip(start, after_head)), "phase 1 must not touch the backbone"
    top = {i for _, idx in backbone.blocks[-2:] for i in idx}
    final = [v.numpy() for v in backbone.hub_variables]
    for i, name in enumerate(backbone.source_names):
        changed = not np.array_equal(after_head[i], final[i])
        assert changed == (i in top and "moving_" not in name), name
    assert history.unfrozen_blocks == ["block_15", "block_16"]
    assert (history.head_epochs, history.fine_tune_epochs) == (2, 1)
    assert len(history.history["val_accuracy"]) == 3
    assert history.last("val_accuracy", phase=1) > 0.6  # real features separate ants from bees


def test_early_stopping_and_label_smoothing(data):
    folder, train_ds, val_ds = data
    model = build_classifier(asset(HUB_035), 2, image_size=64)
    history = fine_tune(model, train_ds, val_ds, head_epochs=6, fine_tune_epochs=0, learning_rate=0.5,
                        early_stopping_patience=1, label_smoothing=0.1, verbose=0)
    assert history.head_epochs < 6  # a huge learning rate stops improving val_loss quickly
    loss = SmoothedSparseCategoricalCrossentropy(0.2)
    y_pred = np.array([[0.9, 0.1]], "float32")
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(np.array([[1.0, 0.0]]), y_pred)
    assert float(loss(np.array([0]), y_pred)) == pytest.approx(float(expected), rel=1e-5)


def test_argument_errors():
    model = build_classifier(asset(HUB_035), 2, image_size=64)
    with pytest.raises(ValueError, match="nothing to train"):
        fine_tune(model, None, head_epochs=0, fine_tune_epochs=0)
    with pytest.raises(ValueError, match="head_epochs"):
        fine_tune(model, None, head_epochs=-1)
    with pytest.raises(TypeError, match="ImageClassifier"):
        fine_tune(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), None)


def test_reported_val_accuracy_is_the_exported_models_after_early_stopping(tmp_path):
    import tl_keras

    result = tl_keras.train(asset(HYMENOPTERA), backbone=asset(HUB_035), image_size=64, head_epochs=4,
                            fine_tune_epochs=0, learning_rate=0.3, early_stopping_patience=1,
                            output=str(tmp_path / "es"), verbose=0)
    measured = result.model.evaluate(result.data.dataset("val", batch_size=64), verbose=0, return_dict=True)
    assert result.metrics["val_accuracy"] == pytest.approx(measured["accuracy"], abs=1e-6)
    assert result.metrics["val_loss"] == pytest.approx(min(result.history.history["val_loss"]), rel=1e-4)
