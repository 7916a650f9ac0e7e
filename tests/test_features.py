"""Cached backbone features: same head as a frozen-backbone fit, seamless phase switch, on-disk store."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    HUB_035,
    HYMENOPTERA,
    HYMENOPTERA_MAJORITY,
    KERAS_035,
    MARGIN,
    asset,
)

from tl_keras.data.folder import load_image_folder
from tl_keras.models.classifier import build_classifier
from tl_keras.training.caches import (
    FeatureStore,
    backbone_fingerprint,
    compute_features,
    head_model,
)
from tl_keras.training.phases import fine_tune


@pytest.fixture(scope="module")
def folder():
    return load_image_folder(asset(HYMENOPTERA), image_size=64)


def _small_folder(tmp_path, per_class=6):
    """A copy of a few real ants/bees photos that a test may edit."""
    root = tmp_path / "data"
    for cls in ("ants", "bees"):
        src = os.path.join(asset(HYMENOPTERA), "train", cls)
        os.makedirs(root / cls)
        for name in sorted(f for f in os.listdir(src) if f.endswith(".jpg"))[:per_class]:
            shutil.copy(os.path.join(src, name), root / cls / name)
    return root


def test_head_on_cached_features_matches_the_frozen_backbone_fit(folder):
    """Same data order, same seed: caching changes the cost of phase 1, not what it learns."""
    accuracies = {}
    for cached in (False, True):
        keras.utils.set_random_seed(1)
        model = build_classifier(asset(HUB_035), 2, image_size=64, class_names=folder.class_names)
        features = compute_features(model, folder, batch_size=32) if cached else None
        history = fine_tune(
            model, folder.dataset("train", batch_size=32, training=True, augment=False),
            folder.dataset("val", batch_size=32), head_epochs=6, fine_tune_epochs=0, features=features, verbose=0,
            head_init="random",  # a ridge start needs the cached features: both arms start alike
        )
        accuracies[cached] = history.last("val_accuracy")
    assert accuracies[True] > 0.7 and accuracies[False] > 0.7
    assert accuracies[True] == pytest.approx(accuracies[False], abs=0.03)  # 0.03 = 4-5 of 153 images


def test_phase_two_starts_from_the_head_phase_one_trained(folder):
    keras.utils.set_random_seed(2)
    model = build_classifier(asset(HUB_035), 2, image_size=64, class_names=folder.class_names)
    features = compute_features(model, folder, batch_size=32)
    kernel_before = model.get_layer("predictions").kernel.numpy().copy()
    history = fine_tune(model, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=32),
                        head_epochs=3, fine_tune_epochs=0, features=features, verbose=0)
    assert not np.array_equal(kernel_before, model.get_layer("predictions").kernel.numpy())
    full = model.evaluate(folder.dataset("val", batch_size=32), verbose=0, return_dict=True)
    # The full model on raw images scores exactly what the head scored on the cached vectors.
    assert full["loss"] == pytest.approx(history.last("val_loss"), rel=1e-4)
    assert full["accuracy"] == pytest.approx(history.last("val_accuracy"), abs=1e-6)
    assert head_model(model).get_layer("predictions") is model.get_layer("predictions")


def test_augmented_variants_differ_and_stay_aligned_with_their_images(folder):
    model = build_classifier(asset(HUB_035), 2, image_size=64)
    plain = compute_features(model, folder, batch_size=64)
    augmented = compute_features(model, folder, copies=2, batch_size=64)
    assert augmented.train.shape == (2, len(folder.train), 1280) and augmented.augmented
    assert not np.allclose(augmented.train[0], augmented.train[1])

    def cosine(a, b):
        return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)

    same = cosine(augmented.train[0], plain.train[0]).mean()
    shuffled = cosine(augmented.train[0], np.roll(plain.train[0], 1, axis=0)).mean()
    assert same > shuffled + 0.1  # row i is a variant of image i, not of another image
    train_ds, _ = augmented.datasets()
    rows = sum(int(x.shape[0]) for x, _ in train_ds)
    assert rows == len(folder.train)  # an epoch is one variant per image, not all of them


def test_store_reuses_features_and_recomputes_what_changed(tmp_path, tiny_hub):
    data = _small_folder(tmp_path)
    store = FeatureStore(str(tmp_path / "cache"))
    model = build_classifier(tiny_hub, 2, image_size=64)
    folder = load_image_folder(str(data), image_size=64, validation_split=0.34)
    first = compute_features(model, folder, store=store)
    assert (first.computed, first.loaded) == (12, 0)
    second = compute_features(model, folder, store=store)
    assert (second.computed, second.loaded) == (0, 12)
    np.testing.assert_array_equal(first.train, second.train)
    np.testing.assert_array_equal(first.val, second.val)

    # Features follow content, not names: a file overwritten with another's bytes needs no pass...
    victim = folder.train.paths[0]
    shutil.copy(folder.train.paths[1], victim)
    copied = compute_features(model, load_image_folder(str(data), image_size=64, validation_split=0.34), store=store)
    assert (copied.computed, copied.loaded) == (0, 12)
    np.testing.assert_array_equal(copied.train[0, 0], copied.train[0, 1])
    # ...while new content is computed, and only it.
    flipped = tf.io.encode_jpeg(tf.image.flip_left_right(tf.io.decode_jpeg(tf.io.read_file(victim))))
    tf.io.write_file(victim, flipped)
    changed = compute_features(model, load_image_folder(str(data), image_size=64, validation_split=0.34), store=store)
    assert (changed.computed, changed.loaded) == (1, 11)
    assert not np.allclose(changed.train[0, 0], copied.train[0, 0])
    np.testing.assert_array_equal(changed.train[0, 1:], copied.train[0, 1:])

    # Another image size, framing or other backbone weights is another key: everything is recomputed.
    bigger = compute_features(build_classifier(tiny_hub, 2, image_size=72),
                              load_image_folder(str(data), image_size=72, validation_split=0.34), store=store)
    assert (bigger.computed, bigger.loaded) == (12, 0)
    squeezed = compute_features(build_classifier(tiny_hub, 2, image_size=64, crop_to_aspect_ratio=False),
                                load_image_folder(str(data), image_size=64, validation_split=0.34, crop_to_aspect_ratio=False),
                                store=store)
    assert (squeezed.computed, squeezed.loaded) == (12, 0)
    tuned = build_classifier(tiny_hub, 2, image_size=64)
    before = backbone_fingerprint(tuned)
    variable = tuned.backbone.weights[0]
    variable.assign(variable.numpy() * 1.01)
    assert backbone_fingerprint(tuned) != before
    assert compute_features(tuned, folder, store=store).loaded == 0


def test_a_damaged_store_file_is_recomputed_with_a_warning(tmp_path):
    data = _small_folder(tmp_path, per_class=3)
    store = FeatureStore(str(tmp_path / "cache"))
    model = build_classifier(asset(HUB_035), 2, image_size=64)
    folder = load_image_folder(str(data), image_size=64, validation_split=0.34)
    compute_features(model, folder, store=store)
    (path,) = [os.path.join(store.directory, f) for f in os.listdir(store.directory)]
    with open(path, "wb") as f:
        f.write(b"not a zip")
    with pytest.warns(UserWarning, match="unreadable feature cache"):
        again = compute_features(model, folder, store=store)
    assert again.computed == 6
    assert compute_features(model, folder, store=store).loaded == 6  # rewritten whole


def test_train_uses_the_cache_by_default_and_reports_it(tmp_path, tiny_hub):
    import tl_keras

    data = _small_folder(tmp_path, per_class=8)
    kwargs = dict(backbone=tiny_hub, image_size=64, head_epochs=2, fine_tune_epochs=1, unfreeze_blocks=1,
                  export=False, evaluate=False, checkpoint_dir=None, verbose=0, validation_split=0.25)
    cached = tl_keras.train(str(data), feature_cache_dir=str(tmp_path / "cache"), **kwargs).metrics
    assert cached["feature_cache"] == {"used": True, "copies": 1, "augmented": False, "computed": 16, "loaded": 0,
                                       "seconds": cached["feature_cache"]["seconds"], "megabytes": 0.0}  # 16 x 64 floats
    again = tl_keras.train(str(data), feature_cache_dir=str(tmp_path / "cache"), **kwargs).metrics
    assert again["feature_cache"]["loaded"] == 16 and again["feature_cache"]["computed"] == 0
    assert again["head_val_accuracy"] == cached["head_val_accuracy"]  # same seed, same features
    off = tl_keras.train(str(data), cache_features=False, normalize_features=True, **kwargs)
    assert off.metrics["feature_cache"] == {"used": False}
    norm = off.model.get_layer("feature_norm")  # standardised features, set from the training images
    assert np.abs(keras.ops.convert_to_numpy(norm.mean)).sum() > 0 and off.metrics["config"]["normalize_features"] is True
    with pytest.raises(ValueError, match="cache_features"):
        tl_keras.train(str(data), cache_features="sometimes", **kwargs)


def test_auto_rule_caches_only_when_it_saves_backbone_passes():
    from tl_keras.training.caches import use_feature_cache as _use_feature_cache
    from tl_keras.config import TrainConfig

    def uses(cache, head_epochs, copies, cache_dir):
        config = TrainConfig(cache_features=cache, head_epochs=head_epochs, fine_tune_epochs=1, feature_copies=copies,
                             feature_cache_dir=cache_dir)
        return _use_feature_cache(config)

    assert uses("auto", head_epochs=5, copies=0, cache_dir=None)
    assert not uses("auto", head_epochs=1, copies=0, cache_dir=None)  # one pass either way
    assert uses("auto", head_epochs=1, copies=0, cache_dir="cache")  # the next run gains
    assert not uses("auto", head_epochs=3, copies=3, cache_dir=None)
    assert uses("auto", head_epochs=4, copies=3, cache_dir=None)
    assert not uses(True, head_epochs=0, copies=0, cache_dir=None)
    assert not uses(False, head_epochs=9, copies=0, cache_dir=None)


def test_both_caches_work_with_a_keras_backbone(folder):
    """Phase 1 on cached features and phase 2 on the cached boundary, for keras.applications: the full
    model on raw images gives each phase's last val loss, and only the top blocks' weights moved."""
    keras.utils.set_random_seed(3)
    model = build_classifier("keras:mobilenet_v2", 2, weights=asset(KERAS_035), image_size=64)
    features = compute_features(model, folder, batch_size=64)
    history = fine_tune(model, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=64),
                        head_epochs=4, fine_tune_epochs=0, features=features, verbose=0)
    assert history.last("val_accuracy") > HYMENOPTERA_MAJORITY + MARGIN
    full = model.evaluate(folder.dataset("val", batch_size=64), verbose=0, return_dict=True)
    assert full["loss"] == pytest.approx(history.last("val_loss"), rel=1e-4)
    before = [w.numpy().copy() for w in model.backbone.weights]
    history = fine_tune(model, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=64),
                        head_epochs=0, fine_tune_epochs=2, unfreeze_blocks=2, folder=folder, restore_best=False, verbose=0)
    cache = history.boundary_cache
    assert cache["used"] and cache["views"] == 2 and cache["shape"] == [2, 2, 56], cache  # block_14's output at 64 px
    full = model.evaluate(folder.dataset("val", batch_size=64), verbose=0, return_dict=True)
    assert full["loss"] == pytest.approx(history.last("val_loss"), abs=1e-4)
    top = {id(w) for _, weights in model.backbone.block_weights()[-2:] for w in weights if w.trainable}
    moved = {id(w) for w, old in zip(model.backbone.weights, before) if not np.array_equal(old, w.numpy())}
    assert moved == top


def test_jit_compile_applies_to_the_feature_head_and_is_refused_for_the_resize(folder):
    import warnings

    # Not in tf.config's public API (it has enable_op_determinism only); Keras reads the state here.
    from tensorflow.python.framework.config import disable_op_determinism, is_op_determinism_enabled

    from tl_keras.training.caches import head_model
    from tl_keras.training.compile import compile_for_phase

    # Keras switches XLA off under op determinism, which `tl_keras.train` turns on for the process:
    # off for this test, then as it was.
    deterministic = is_op_determinism_enabled()
    disable_op_determinism()
    try:
        model = build_classifier(asset(HUB_035), 2, image_size=64)
        features = compute_features(model, folder, batch_size=64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = fine_tune(model, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=64),
                                head_epochs=2, fine_tune_epochs=0, features=features, jit_compile=True, verbose=0)
        head = head_model(model)
        compile_for_phase(head, 1e-3, jit_compile=True)
    finally:
        if deterministic:
            tf.config.experimental.enable_op_determinism()
    assert any("XLA cannot compile layer(s) resize" in str(w.message) for w in caught)  # warned
    assert model.jit_compile is False and head.jit_compile is True  # the full model without XLA; the head with it
    loss = history.history["loss"]
    assert loss[-1] < loss[0]


def test_phase_two_on_the_boundary_cache_is_the_full_model_trained(folder):
    """Phase 2 trains the top blocks on activations computed once; the classifier on raw images then
    gives exactly the validation loss the boundary model reported, and only the top blocks moved."""
    keras.utils.set_random_seed(3)
    model = build_classifier(asset(HUB_035), 2, image_size=64, class_names=folder.class_names)
    before = [v.numpy().copy() for v in model.backbone.hub_variables]
    history = fine_tune(model, folder.dataset("train", batch_size=32, training=True), folder.dataset("val", batch_size=32),
                        head_epochs=2, fine_tune_epochs=2, unfreeze_blocks=2, folder=folder, verbose=0)
    cache = history.boundary_cache
    assert cache["used"] and cache["views"] == 2 and cache["shape"] == [2, 2, 56], cache
    assert cache["computed"] == 2 * len(folder.train) + len(folder.val)
    full = model.evaluate(folder.dataset("val", batch_size=32), verbose=0, return_dict=True)
    assert full["loss"] == pytest.approx(history.last("val_loss"), abs=1e-4)
    assert full["accuracy"] == pytest.approx(history.last("val_accuracy"), abs=1e-6)
    assert full["accuracy"] > HYMENOPTERA_MAJORITY + MARGIN
    top = {i for _, idx in model.backbone.blocks[-2:] for i in idx}
    for i, (name, old, var) in enumerate(zip(model.backbone.source_names, before, model.backbone.hub_variables)):
        assert np.array_equal(old, var.numpy()) == (i not in top or "moving_" in name), name


def test_boundary_cache_views_reasons_and_memory_limit(folder):
    from tl_keras.models.registry import BoundaryUnavailable
    from tl_keras.training.caches import boundary_model, compute_boundary

    model = build_classifier(asset(HUB_035), 2, image_size=64)
    with pytest.raises(BoundaryUnavailable, match="no block is trainable"):
        compute_boundary(model, folder)
    model.backbone.set_trainable_blocks(1)
    exact = compute_boundary(model, folder, batch_size=64)
    augmented = compute_boundary(model, folder, views=2, batch_size=64)
    assert exact.train.shape == (1, len(folder.train), 2, 2, 56) and not exact.augmented
    np.testing.assert_array_equal(exact.val, augmented.val)  # validation images are never augmented
    assert not np.allclose(augmented.train[0], augmented.train[1])  # two different views ...
    assert not np.allclose(augmented.train[0], exact.train[0])
    again = compute_boundary(model, folder, views=2, batch_size=64)
    np.testing.assert_array_equal(again.train, augmented.train)  # ... drawn from the seed: a rerun repeats them
    trained = boundary_model(model, exact.top, exact.train.shape[2:])
    assert {id(v) for v in trained.trainable_variables} == {id(v) for _, ws in model.backbone.block_weights()[-1:] for v in ws
                                                              if v.trainable} | {id(v) for v in model.get_layer("predictions").trainable_variables}
    with pytest.raises(BoundaryUnavailable, match="MB"):
        compute_boundary(model, folder, limit_megabytes=0.5)
    with pytest.raises(ValueError, match="cache_boundary=True.*no ImageFolder"):
        fine_tune(model, folder.dataset("train", batch_size=64, training=True), head_epochs=0, fine_tune_epochs=1,
                  cache_boundary=True, verbose=0)
