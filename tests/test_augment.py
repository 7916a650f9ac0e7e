"""Augmentation policies: none, light and strong (RandAugment per image, MixUp / CutMix per batch)."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import HUB_035, asset, coin_tail, hymenoptera_subset

from tl_keras.config import TrainConfig
from tl_keras.data.augment import mix_batches
from tl_keras.data.epochs import EPOCH_ATTRIBUTE, epoch_variable


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """64 real photos at 48 px: RandAugment runs one image at a time, and every pass pays for it."""
    from tl_keras.data.label_files import load_label_file

    return load_label_file(hymenoptera_subset(tmp_path_factory.mktemp("augment") / "labels.csv", train=32, val=8),
                           image_size=48)


def _pass(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_the_policy_setting_reads_names_and_the_older_booleans():
    assert TrainConfig().augment == "light"
    assert (TrainConfig(augment=True).augment, TrainConfig(augment=False).augment) == ("light", "none")
    assert TrainConfig.from_dict({"augment": False}).augment == "none"  # configs saved before the policies
    with pytest.raises(ValueError, match="`augment` must be one of 'none', 'light', 'strong'"):
        TrainConfig(augment="heavy")
    # strong seeds Keras' layers through `layer.generator.state`; a layer without one is a clear error.
    import keras

    from tl_keras.data.augment import _seedable

    with pytest.raises(RuntimeError, match="does not expose as `generator.state`. Use augment='light'"):
        _seedable(keras.layers.Identity())


def test_each_policy_changes_training_images_as_it_says(folder):
    plain, labels = _pass(folder.dataset("train", batch_size=64, training=True, augment="none", shuffle=False))
    np.testing.assert_array_equal(plain, folder.train.images.astype(np.float32))  # none: the pixels as decoded
    light, _ = _pass(folder.dataset("train", batch_size=64, training=True, augment="light", shuffle=False))
    strong, strong_labels = _pass(folder.dataset("train", batch_size=64, training=True, augment="strong", shuffle=False))
    np.testing.assert_array_equal(strong_labels, labels)  # rows stay aligned with their labels
    assert strong.shape == light.shape == plain.shape and 0.0 <= strong.min() and strong.max() <= 255.0
    # strong is light (the same flip and crop) followed by RandAugment's two operations per image:
    # it moves pixels further from the originals than light does.
    light_change = np.abs(light - plain).mean(axis=(1, 2, 3))
    strong_change = np.abs(strong - plain).mean(axis=(1, 2, 3))
    assert np.mean(strong_change > light_change) > 0.7 and strong_change.mean() > 1.5 * light_change.mean()


def test_dihedral_symmetry_turns_the_light_views_every_way(folder):
    """symmetry="dihedral" adds `+turns` to the policy: each training image is its light view (the same
    flip and crop) turned by a multiple of 90 degrees and maybe flipped upside down, and over 32
    photos every one of the 8 turns of a square is drawn."""
    config = TrainConfig(symmetry="dihedral")
    assert (config.augmentation, config.replace(augment="none").augmentation) == ("light+turns", "none")
    assert TrainConfig(symmetry="flip").augmentation == "light" and TrainConfig().symmetry == "auto"
    with pytest.raises(ValueError, match="`symmetry` must be one of 'auto', 'flip', 'dihedral'"):
        TrainConfig(symmetry="rotate")
    light, _ = _pass(folder.dataset("train", batch_size=64, training=True, augment="light", shuffle=False))
    turned, _ = _pass(folder.dataset("train", batch_size=64, training=True, augment=config.augmentation, shuffle=False))
    drawn = set()
    for view, out in zip(light, turned):
        turns = [(k, upside) for k in range(4) for upside in (False, True)
                 if np.allclose(np.flipud(np.rot90(view, k)) if upside else np.rot90(view, k), out, atol=1e-3)]
        assert turns, "a turned view is not a turn of the light view"
        drawn.add(turns[0])
    assert len(drawn) == 8, drawn


def test_strong_draws_are_a_function_of_seed_and_epoch_only(folder):
    """What lets a resumed strong run repeat an uninterrupted one."""
    ds = folder.dataset("train", batch_size=64, training=True, augment="strong")
    first, second = _pass(ds), _pass(ds)
    assert not np.array_equal(first[0], second[0])  # each epoch draws anew
    again = folder.dataset("train", batch_size=64, training=True, augment="strong")
    epoch_variable(again).assign(1)  # start at epoch 1, as a resumed run does
    np.testing.assert_array_equal(_pass(again)[0], second[0])


def test_mix_batches_blends_inputs_and_labels_reproducibly(folder):
    ds = folder.dataset("train", batch_size=32, training=True, augment="none")
    mixed = mix_batches(ds, 2, seed=3)
    assert epoch_variable(mixed) is epoch_variable(ds)  # the epoch counter travels with it
    images, soft = _pass(mixed)
    assert soft.shape == (len(folder.train), 2) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert 0.3 < np.mean((soft > 0.01) & (soft < 0.99)) < 1.0  # most rows blend two classes' labels
    epoch_variable(ds).assign(0)
    np.testing.assert_array_equal(_pass(mixed)[0], images)  # epoch 0 again: the same mixes
    # Multi-label 0/1 flags are blended as they are: every class keeps its own share, in [0, 1].
    flags = (np.arange(len(folder.train) * 3).reshape(-1, 3) % 2).astype(np.float32)
    pairs = tf.data.Dataset.from_tensor_slices((folder.train.images.astype(np.float32), flags)).batch(32)
    setattr(pairs, EPOCH_ATTRIBUTE, epoch_variable(ds))
    _, blended = _pass(mix_batches(pairs, 3, seed=3))
    assert blended.shape == flags.shape and 0.0 <= blended.min() and blended.max() <= 1.0
    assert not np.allclose(blended, flags) and np.allclose(blended.sum(1), 1.5, atol=0.5001)
    # Cached feature vectors are not mixed: no region to cut, and not an image.
    vectors = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8), np.float32), np.zeros(4, np.int32))).batch(2)
    assert mix_batches(vectors, 2, seed=0) is vectors


def test_the_loss_and_accuracy_take_soft_labels():
    from tl_keras.training.compile import (
        SmoothedSparseCategoricalCrossentropy,
        label_accuracy,
    )

    probs = tf.constant([[0.7, 0.3], [0.2, 0.8]])
    soft = tf.constant([[0.6, 0.4], [0.0, 1.0]])
    expected = -np.mean([0.6 * np.log(0.7) + 0.4 * np.log(0.3), np.log(0.8)])
    np.testing.assert_allclose(float(SmoothedSparseCategoricalCrossentropy()(soft, probs)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(SmoothedSparseCategoricalCrossentropy()(tf.constant([0, 1]), probs)),
                               -np.mean(np.log([0.7, 0.8])), rtol=1e-5)
    assert label_accuracy(soft, probs).numpy().tolist() == [1.0, 1.0]
    assert label_accuracy(tf.constant([1, 1]), probs).numpy().tolist() == [0.0, 1.0]


def test_a_strong_run_learns_from_real_photos(tmp_path):
    """Both phases with RandAugment and MixUp / CutMix on single-label data (phase 2 on mixed boundary
    activations, trained on soft labels). The multi-label end-to-end test runs strong too."""
    import tl_keras

    data = hymenoptera_subset(tmp_path / "labels.csv", train=40, val=70)
    result = tl_keras.train(data, backbone=asset(HUB_035), image_size=64, head_epochs=3, fine_tune_epochs=2,
                            unfreeze_blocks=2, restore_best=False, augment="strong", export=False, evaluate=False, checkpoint_dir=None, verbose=0)
    metrics = result.metrics
    assert metrics["config"]["augment"] == "strong" and metrics["boundary_cache"]["views"] == 2
    # val: 70 ants, 70 bees; a coin scores >= 0.65 with probability under 1e-3
    assert coin_tail(140, 0.65) < 1e-3
    assert metrics["fine_tune_epochs"] == 2 and metrics["val_accuracy"] >= 0.65
