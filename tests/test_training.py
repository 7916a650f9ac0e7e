"""Two-phase fit on the real ants/bees photos: what pretrained features decide, with the 0.35 Hub
backbone; the mechanics (schedules, layer decay, class weights, best epochs, early stopping), with
the small `tiny_hub` module, at a fraction of the cost."""

import keras
import numpy as np
import pytest
from conftest import HUB_035, HYMENOPTERA, HYMENOPTERA_MAJORITY, MARGIN, asset, assert_examples_run

from tl_keras.config import TrainConfig
from tl_keras.data.epochs import epoch_variable
from tl_keras.data.folder import load_image_folder
from tl_keras.models.classifier import build_classifier
from tl_keras.training.checkpoint import build_optimizer
from tl_keras.training.compile import (
    SmoothedSparseCategoricalCrossentropy,
    compile_for_phase,
)
from tl_keras.training.phases import fine_tune


@pytest.fixture(scope="module")
def data():
    # Whole photos squeezed, as these tests' thresholds were set on (framing is tested in test_data).
    folder = load_image_folder(asset(HYMENOPTERA), image_size=64, crop_to_aspect_ratio=False)
    return folder, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=64)


@pytest.fixture(scope="module")
def tiny(tiny_hub):
    """The ants/bees photos at 32 px, and a builder of classifiers on `tiny_hub` (blocks 1-3)."""
    folder = load_image_folder(asset(HYMENOPTERA), image_size=32)
    train_ds = folder.dataset("train", batch_size=32, training=True)
    val_ds = folder.dataset("val", batch_size=64)

    def build():
        return build_classifier(tiny_hub, 2, image_size=32, class_names=folder.class_names)

    return folder, train_ds, val_ds, build


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
                        learning_rate=1e-3, fine_tune_schedule="constant", restore_best=False, callbacks=[recorder], verbose=0)  # keep the last weights
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
    assert history.last("val_accuracy", phase=1) > HYMENOPTERA_MAJORITY + MARGIN  # real features separate ants from bees


def test_early_stopping_and_label_smoothing(tiny):
    folder, train_ds, val_ds, build = tiny
    model = build()
    history = fine_tune(model, train_ds, val_ds, head_epochs=6, fine_tune_epochs=0, learning_rate=0.5,
                        early_stopping_patience=1, label_smoothing=0.1, verbose=0)
    # Stopped by patience 1: every epoch but the last improved the best val_loss, the last did not, and
    # that came before the 6 epochs asked for (a huge learning rate stops improving quickly).
    losses = history.history["val_loss"]
    assert len(losses) == history.head_epochs < 6
    assert all(losses[i] < min(losses[:i]) for i in range(1, len(losses) - 1)) and losses[-1] >= min(losses[:-1])
    loss = SmoothedSparseCategoricalCrossentropy(0.2)
    y_pred = np.array([[0.9, 0.1]], "float32")
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(np.array([[1.0, 0.0]]), y_pred)
    assert float(loss(np.array([0]), y_pred)) == pytest.approx(float(expected), rel=1e-5)



def test_phase_two_under_a_decaying_schedule_runs_to_its_end(tiny):
    # The same phase 2 (a rate far too high, so val_loss does not improve for long) stops early at the
    # constant rate and runs every epoch under warmup-cosine, whose decay to 0 is what settles it.
    folder, train_ds, val_ds, build = tiny
    epochs = {}
    for schedule in ("constant", "warmup-cosine"):
        keras.utils.set_random_seed(3)
        history = fine_tune(build(), train_ds, val_ds, head_epochs=1, fine_tune_epochs=6, learning_rate=1e-2,
                            fine_tune_learning_rate=1.0, fine_tune_schedule=schedule, early_stopping_patience=1,
                            restore_best=False, verbose=0)
        epochs[schedule] = history.fine_tune_epochs
    assert epochs["constant"] < 6 and epochs["warmup-cosine"] == 6

def test_argument_errors(tiny):
    model = tiny[3]()
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


def test_class_weights_shift_the_decision_toward_the_heavier_class(data):
    from tl_keras.training.caches import compute_features
    from tl_keras.training.compile import balanced_class_weights

    assert balanced_class_weights([0, 0, 0, 1], 2) == {0: pytest.approx(2 / 3), 1: pytest.approx(2.0)}
    with pytest.raises(ValueError, match="no training images"):
        balanced_class_weights([0, 0], 2)
    folder, train_ds, val_ds = data  # real features: the even head recognises both classes
    recalls = {}
    for name, weights in (("even", None), ("bees heavy", {0: 0.05, 1: 1.0})):
        keras.utils.set_random_seed(5)
        model = build_classifier(asset(HUB_035), 2, image_size=64)
        features = compute_features(model, folder, batch_size=32)
        fine_tune(model, train_ds, val_ds, head_epochs=4, fine_tune_epochs=0, class_weight=weights,
                  features=features, verbose=0)
        predicted = model.predict(val_ds, verbose=0).argmax(1)
        recalls[name] = (predicted[folder.val.labels == 1] == 1).mean()
    assert recalls["bees heavy"] > recalls["even"] and recalls["bees heavy"] > 0.95


class _RateLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))


def test_warmup_cosine_schedule_for_phase_two(tiny):
    folder, train_ds, val_ds, build = tiny
    model = build()
    log = _RateLog()
    fine_tune(model, train_ds, val_ds, head_epochs=1, fine_tune_epochs=2, unfreeze_blocks=1, learning_rate=1e-3,
              fine_tune_schedule="warmup-cosine", callbacks=[log], verbose=0)
    steps = int(train_ds.cardinality())
    phase1, phase2 = log.rates[:steps], log.rates[steps:]
    assert phase1 == pytest.approx([1e-3] * steps)  # constant in phase 1
    assert len(phase2) == 2 * steps
    assert phase2[0] < 1e-5 and max(phase2) == pytest.approx(1e-4, rel=0.05)  # warm-up to lr/10
    assert np.argmax(phase2) == pytest.approx(steps, abs=1) and phase2[-1] < 0.1e-4  # then cosine to ~0
    with pytest.raises(ValueError, match="fine_tune_schedule"):
        fine_tune(model, train_ds, val_ds, head_epochs=1, fine_tune_schedule="linear")


def test_tensorboard_logs_both_phases(flowers_result):
    import os

    for sub in ("train", "validation"):
        events = [f for f in os.listdir(os.path.join(flowers_result.tensorboard_dir, sub)) if "tfevents" in f]
        assert events and all(os.path.getsize(os.path.join(flowers_result.tensorboard_dir, sub, f)) > 0 for f in events)
    assert len(os.listdir(os.path.join(flowers_result.tensorboard_dir, "train"))) >= 2  # one log per phase


def _one_step_changes(tiny, layer_decay, unfreeze_blocks=2, lr=1e-3):
    """Max |change| per backbone block (top first) after one phase-2 Adam step, and the head's."""
    folder, train_ds, _, build = tiny
    keras.utils.set_random_seed(0)
    model = build()
    one_batch = train_ds.take(1)
    before = [(name, [w.numpy().copy() for w in weights]) for name, weights in model.backbone.block_weights()]
    head_before = model.get_layer("predictions").kernel.numpy().copy()
    fine_tune(model, one_batch, head_epochs=0, fine_tune_epochs=1, unfreeze_blocks=unfreeze_blocks,
              fine_tune_learning_rate=lr, layer_decay=layer_decay, verbose=0)
    after = dict(model.backbone.block_weights())
    changes = [max(float(np.abs(w.numpy() - b).max()) for w, b in zip(after[name], olds)) for name, olds in reversed(before)]
    return changes, float(np.abs(model.get_layer("predictions").kernel.numpy() - head_before).max())


def test_layer_decay_scales_each_blocks_step_and_zero_is_freezing(tiny):
    # Adam's first step moves every weight with a non-negligible gradient by about the learning rate,
    # so each block's largest change is its learning rate.
    changes, head = _one_step_changes(tiny, layer_decay=0.5)
    assert len(changes) == 3  # tiny_hub's block_3 (top), block_2, block_1
    assert head == pytest.approx(1e-3, rel=0.02)
    assert changes[:2] == pytest.approx([1e-3, 5e-4], rel=0.02)
    assert changes[2] == 0.0  # not unfrozen: learning rate 0
    changes, _ = _one_step_changes(tiny, layer_decay=0.0)
    assert changes[0] == pytest.approx(1e-3, rel=0.02) and changes[1:] == [0.0, 0.0]
    with pytest.raises(ValueError, match="layer_decay"):
        _one_step_changes(tiny, layer_decay=1.5)


class _BackboneAtPhaseStart(keras.callbacks.Callback):
    """The classifier's backbone weights when each phase begins (phase 2 fits the boundary model,
    which shares them)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier, self.snapshots = classifier, []

    def on_train_begin(self, logs=None):
        self.snapshots.append([v.numpy().copy() for v in self.classifier.backbone.hub_variables])


def test_each_phase_ends_with_its_best_epoch_and_phase_two_is_kept_only_if_it_beats_the_head(tiny):
    folder, train_ds, val_ds, build = tiny
    runs = {}
    for name, rate in (("gentle", 1e-4), ("wrecking", 0.5)):
        keras.utils.set_random_seed(4)
        model = build()
        snapshots = _BackboneAtPhaseStart(model)
        history = fine_tune(model, train_ds, val_ds, head_epochs=3, fine_tune_epochs=2, unfreeze_blocks=1,
                            fine_tune_learning_rate=rate, folder=folder, callbacks=[snapshots], verbose=0)
        full = model.evaluate(val_ds, verbose=0, return_dict=True)
        runs[name] = (history, model, snapshots, full)
    for name, (history, model, snapshots, full) in runs.items():
        losses = history.history["val_loss"]
        head_best = history.best_epochs[0]
        assert losses[head_best] == min(losses[:3]), name  # phase 1 ended with its best epoch
        assert full["loss"] == pytest.approx(history.final("val_loss"), abs=1e-4), name  # the model is that epoch's
    history, model, snapshots, full = runs["wrecking"]
    # Adam at 0.5 wrecks the top block: no phase-2 epoch beats the head, so the head's weights come back.
    assert min(history.history["val_loss"][3:]) > history.history["val_loss"][history.best_epochs[0]]
    assert history.fine_tune_kept is False and history.best_epochs[1] is None
    after_head = snapshots.snapshots[1]  # the backbone when phase 2 began
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(after_head, model.backbone.hub_variables))
    history, *_ = runs["gentle"]
    assert history.fine_tune_kept is True and history.best_epochs[1] in (3, 4)
    assert history.final("val_loss") == min(history.history["val_loss"])

    # restore_best=False: the same wrecking run only stops early, and ends with its last epoch's weights.
    keras.utils.set_random_seed(4)
    model = build()
    history = fine_tune(model, train_ds, val_ds, head_epochs=3, fine_tune_epochs=2, unfreeze_blocks=1,
                        fine_tune_learning_rate=0.5, folder=folder, restore_best=False, verbose=0)
    full = model.evaluate(val_ds, verbose=0, return_dict=True)
    assert history.best_epochs == [None, None] and history.fine_tune_kept is None  # not judged
    assert history.history["val_loss"][-1] > min(history.history["val_loss"])  # the last epoch is not the best
    assert full["loss"] == pytest.approx(history.history["val_loss"][-1], abs=1e-4) == history.final("val_loss")


def test_depth_search_tries_each_depth_from_the_head_and_keeps_the_best(tiny):
    """unfreeze_blocks=(1, 3): each depth's record is what a run at that depth alone scores, and the
    model ends with the depth of lowest kept val_loss."""
    folder, train_ds, val_ds, build = tiny
    settings = dict(head_epochs=3, fine_tune_epochs=2, fine_tune_learning_rate=3e-3, folder=folder, verbose=0)
    keras.utils.set_random_seed(5)
    model = build()
    history = fine_tune(model, train_ds, val_ds, unfreeze_blocks=(1, 3), **settings)
    records = history.depth_search
    assert [r["unfreeze_blocks"] for r in records] == [1, 3]
    for record in records[1:]:  # the deeper depth ran second, from the head's state again: as if run alone
        keras.utils.set_random_seed(5)
        alone = fine_tune(build(), train_ds, val_ds, unfreeze_blocks=record["unfreeze_blocks"], **settings)
        phase_two = alone.history["val_loss"][alone.head_epochs:]
        assert record["val_loss"] == pytest.approx(min(phase_two), abs=1e-5)
        assert record["beat_head"] == alone.fine_tune_kept and record["epochs"] == alone.fine_tune_epochs
    head_loss = history.history["val_loss"][history.best_epochs[0]]
    beaten = [r for r in records if r["beat_head"]]
    chosen = [r for r in records if r["chosen"]]
    full = model.evaluate(val_ds, verbose=0, return_dict=True)
    if beaten:  # the best depth's weights, and its blocks are the trainable ones
        assert len(chosen) == 1 and chosen[0]["val_loss"] == min(r["val_loss"] for r in beaten)
        chosen = chosen[0]
        assert full["loss"] == pytest.approx(chosen["val_loss"], abs=1e-4)
        assert len(history.unfrozen_blocks) == chosen["unfreeze_blocks"] == model.backbone.unfrozen_blocks
    else:  # no depth beat the head: the head's weights, and no depth is chosen
        assert full["loss"] == pytest.approx(head_loss, abs=1e-4) and history.fine_tune_kept is False and not chosen
    with pytest.raises(ValueError, match="searches phase 2's depth by val_loss"):
        fine_tune(build(), train_ds, unfreeze_blocks="search", head_epochs=1, fine_tune_epochs=1, verbose=0)


def test_phase_two_goes_deeper_where_the_run_measured_no_up(tiny):
    """Left unset, phase 2's depth follows the measured symmetry: the model's far-domain depth for
    "dihedral", its default for "flip"; a set `unfreeze_blocks` wins either way. The blocks that
    train are the ones named, and only their weights move."""
    import tl_keras.training.phases as phases

    folder, train_ds, val_ds, build = tiny
    settings = dict(head_epochs=1, fine_tune_epochs=1, restore_best=False, verbose=0)
    for symmetry, setting, expected in [("flip", None, 1), ("dihedral", None, 2), ("dihedral", 3, 3), ("flip", 2, 2)]:
        keras.utils.set_random_seed(0)
        model = build()
        model.default_unfreeze_blocks, model.far_domain_unfreeze_blocks = 1, 2
        before = [v.numpy().copy() for v in model.backbone.hub_variables]
        history = fine_tune(model, train_ds, val_ds, symmetry=symmetry, unfreeze_blocks=setting, **settings)
        assert history.unfrozen_blocks == model.backbone.block_names[-expected:], (symmetry, setting)
        top = {i for _, idx in model.backbone.blocks[-expected:] for i in idx}
        moved = {i for i, (a, v) in enumerate(zip(before, model.backbone.hub_variables)) if not np.array_equal(a, v.numpy())}
        assert moved and moved <= top, (symmetry, setting)
        reason = phases.phase_two_depth(model, TrainConfig(symmetry=symmetry, unfreeze_blocks=setting))[1]
        assert ("no up" in reason) == (symmetry == "dihedral" and setting is None), reason
    assert_examples_run(phases, 2)


def test_the_eagerly_built_optimizer_trains_exactly_as_a_lazily_built_one(tiny):
    """`build_optimizer` makes the slot variables before `fit` (not while the first step traces):
    the same training, weight for weight, and the slots are there before the first step."""
    _, train_ds, val_ds, build = tiny
    trained = []
    for eager in (False, True):
        keras.utils.set_random_seed(3)
        epoch_variable(train_ds).assign(0)  # both runs see the same epochs of shuffled, augmented data
        model = build()
        model.backbone.set_trainable_blocks(1)
        compile_for_phase(model, 1e-3)
        if eager:
            build_optimizer(model)
            assert model.optimizer.built and len(model.optimizer.variables) > 2 * len(model.trainable_variables)
        else:
            assert not model.optimizer.built
        model.fit(train_ds.take(3), validation_data=val_ds.take(1), epochs=2, verbose=0, shuffle=False)
        trained.append([keras.ops.convert_to_numpy(v) for v in model.trainable_variables])
    assert len(trained[0]) > 2
    for lazy, eager in zip(*trained):
        np.testing.assert_array_equal(lazy, eager)
