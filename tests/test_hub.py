"""The Keras 3 layer over TF Hub SavedModels, on the real MobileNetV2 0.35 feature vector."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import HUB_035, asset

from tl_keras.models.backbones.hub import HubBackbone, resolve_handle, save_hub_module, takes_any_size
from tl_keras.models.registry import BackboneDownloadError, BoundaryUnavailable


def _images(n=8, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


def _model(backbone, classes=2):
    model = keras.Sequential([keras.Input((64, 64, 3)), backbone, keras.layers.Dense(classes, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def test_layer_matches_the_saved_model_forward_pass_and_reports_blocks():
    backbone = HubBackbone(asset(HUB_035))
    x = _images()
    reference = tf.saved_model.load(HUB_035)(tf.constant(x), training=False).numpy()
    np.testing.assert_allclose(backbone(x).numpy(), reference, atol=1e-5)
    assert backbone.block_names[0] == "stem" and backbone.block_names[-1] == "block_16"
    assert len(backbone.block_names) == 17
    assert backbone.trainable_weights == [] and backbone.unfrozen_blocks == 0


def test_fine_tuning_top_blocks_changes_only_them_and_the_output():
    backbone = HubBackbone(asset(HUB_035), inference_mode=True)
    model = _model(backbone)
    assert backbone.set_trainable_blocks(2) == ["block_15", "block_16"]
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    x, y = _images(16), np.tile([0, 1], 8)
    before = [v.numpy().copy() for v in backbone.hub_variables]
    features_before = backbone(x[:4]).numpy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    top = {i for _, idx in backbone.blocks[-2:] for i in idx}
    for i, (name, old, var) in enumerate(zip(backbone.source_names, before, backbone.hub_variables)):
        trainable_source = "moving_" not in name
        if i in top and trainable_source:
            assert not np.array_equal(old, var.numpy()), f"{name} should have trained"
        else:
            assert np.array_equal(old, var.numpy()), f"{name} must stay bit-identical"
    # The SavedModel's own forward pass sees the new values: gradients reached the variables it reads.
    direct = backbone._hub.module(tf.constant(x[:4]), training=False).numpy()
    np.testing.assert_allclose(backbone(x[:4]).numpy(), direct, atol=1e-6)
    assert np.abs(direct - features_before).max() > 1e-3


def test_training_flag_reaches_batch_norm_unless_inference_mode():
    x = _images(8)
    free = HubBackbone(asset(HUB_035))
    free.set_trainable_blocks("all")
    stats = [v for n, v in zip(free.source_names, free.hub_variables) if n.endswith("moving_mean")]
    before = stats[0].numpy().copy()
    free(x, training=True)
    assert not np.array_equal(before, stats[0].numpy())
    pinned = HubBackbone(asset(HUB_035), inference_mode=True)
    stats = [v for n, v in zip(pinned.source_names, pinned.hub_variables) if n.endswith("moving_mean")]
    before = stats[0].numpy().copy()
    pinned(x, training=True)
    assert np.array_equal(before, stats[0].numpy())


def test_keras_trainable_switch_and_block_counts():
    backbone = HubBackbone(asset(HUB_035))
    backbone.trainable = True
    n_all = len(backbone.trainable_weights)
    assert n_all == len(tf.saved_model.load(HUB_035).trainable_variables)
    backbone.set_trainable_blocks(1)
    assert 0 < len(backbone.trainable_weights) < n_all
    top = {i for i in backbone.blocks[-1][1]}
    expected = [v for i, v in enumerate(backbone.hub_variables) if i in top and v.trainable]
    assert backbone.trainable_weights == expected
    assert all(backbone.source_names[i].startswith(("block_16", "Conv_1")) for i in top)
    with pytest.raises(ValueError, match="non-negative integer or 'all'"):
        backbone.set_trainable_blocks(-1)


def test_model_with_the_layer_saves_and_reloads(tmp_path):
    backbone = HubBackbone(asset(HUB_035), inference_mode=True)
    model = _model(backbone)
    backbone.set_trainable_blocks(1)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    x = _images(8)
    model.fit(x, np.tile([0, 1], 4), epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert reloaded.layers[0].unfrozen_blocks == 1 and reloaded.layers[0].inference_mode


def test_functional_model_and_dict_free_output_shape():
    backbone = HubBackbone(asset(HUB_035))
    inputs = keras.Input((None, None, 3))
    outputs = backbone(inputs)
    assert tuple(outputs.shape) == (None, 1280)
    model = keras.Model(inputs, outputs)
    assert model.predict(_images(2, 40), verbose=0).shape == (2, 1280)


def test_folder_without_saved_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no saved_model.pb"):
        HubBackbone(str(tmp_path))


def test_download_failure_names_the_handle_and_the_local_copy_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    started = time.monotonic()
    with pytest.raises(BackboneDownloadError) as info:
        resolve_handle(handle, timeout=10)
    assert time.monotonic() - started < 60
    message = str(info.value)
    assert handle in message and "--backbone /path/to/folder" in message and "TFHUB_CACHE_DIR" in message


def test_save_hub_module_round_trip_keeps_names_and_outputs(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="block_1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="block_1_bn")(x)
    x = keras.layers.Conv2D(8, 3, name="block_2_conv")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    extractor = keras.Model(inputs, outputs, name="tiny")
    path = save_hub_module(extractor, str(tmp_path / "tiny_hub"))
    layer = HubBackbone(path)
    assert layer.block_names == ["block_1", "block_2"]
    x = _images(3, 16)
    np.testing.assert_allclose(layer(x).numpy(), extractor(x).numpy(), atol=1e-6)


def test_a_hanging_network_fails_within_the_timeout(tmp_path, monkeypatch, black_hole_url):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TL_KERAS_DOWNLOAD_TIMEOUT", "2")
    started = time.monotonic()
    with pytest.raises(BackboneDownloadError, match="timed out|time"):
        resolve_handle(black_hole_url + "models/feature_vector/5")
    assert time.monotonic() - started < 20  # not the minutes a socket with no timeout would wait
    monkeypatch.setenv("TL_KERAS_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TL_KERAS_DOWNLOAD_TIMEOUT"):
        resolve_handle(black_hole_url + "models/feature_vector/5")


def test_cut_at_the_last_layer_matches_the_module_in_outputs_and_gradients():
    full = HubBackbone(asset(HUB_035), inference_mode=True)
    top = HubBackbone(asset(HUB_035), inference_mode=True, cut="global_average_pooling2d_3")
    x = tf.constant(_images(4))
    np.testing.assert_allclose(top(x).numpy(), full(x).numpy(), atol=1e-4)
    for layer in (full, top):
        layer.set_trainable_blocks(2)
    grads = []
    for layer in (full, top):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x, training=True)))
        grads.append({v.name: g.numpy() for v, g in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights))})
    assert sorted(grads[0]) == sorted(grads[1]) and any(n.startswith("Conv_1") for n in grads[0])
    for name, g in grads[0].items():
        np.testing.assert_allclose(grads[1][name], g, rtol=1e-3, atol=1e-5 * np.abs(g).max())


def test_cut_at_a_middle_block_keeps_only_the_variables_below_and_fine_tunes_them():
    cut = HubBackbone(asset(HUB_035), inference_mode=True, cut="block_12")
    assert cut.cut_layer == "block_12_add" and cut.block_names[-1] == "block_12"
    assert not any(n.startswith(("block_13", "block_16", "Conv_1")) for n in cut.source_names)
    assert cut.compute_output_shape((None, 64, 64, 3)) == (None, 32)  # 0.35 x 96 channels, pooled
    model = _model(cut)
    assert cut.set_trainable_blocks(1) == ["block_12"]
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _images(8), np.array([0, 1] * 4)
    before = [v.numpy().copy() for v in cut.hub_variables]
    out_before = cut(x).numpy()
    model.fit(x, y, epochs=2, verbose=0)
    changed = {cut.source_names[i].split("/")[0] for i, (v, b) in enumerate(zip(cut.hub_variables, before))
               if not np.array_equal(v.numpy(), b)}
    assert changed and all(name.startswith("block_12_") for name in changed)
    assert not np.allclose(cut(x).numpy(), out_before)  # the forward pass reads the trained variables


def test_cut_saves_and_reloads_and_bad_cut_names_list_the_blocks(tmp_path):
    model = _model(HubBackbone(asset(HUB_035), inference_mode=True, cut="block_6"))
    path = str(tmp_path / "cut.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    x = _images(2)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="block_99.*Blocks, bottom first: stem, block_1"):
        HubBackbone(asset(HUB_035), cut="block_99")


def test_reinitialize_draws_fresh_weights_like_a_new_keras_layer():
    backbone = HubBackbone(asset(HUB_035))
    backbone.reinitialize(seed=1)
    values = dict(zip(backbone.source_names, [v.numpy() for v in backbone.hub_variables]))
    gamma = next(k for k in values if k.endswith("block_5_project_BN/gamma"))
    assert np.all(values[gamma] == 1) and np.all(values[gamma.replace("gamma", "moving_mean")] == 0)
    kernel = values[next(k for k in values if k.endswith("block_5_project/kernel"))]
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / np.prod(kernel.shape[:-1])), rel=0.1)
    again = HubBackbone(asset(HUB_035))
    again.reinitialize(seed=1)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(again.hub_variables, backbone.hub_variables))


def test_split_at_trainable_computes_the_module_and_its_gradients_through_one_boundary():
    backbone = HubBackbone(asset(HUB_035), inference_mode=True)
    with pytest.raises(BoundaryUnavailable, match="no block is trainable"):
        backbone.split_at_trainable()
    backbone.set_trainable_blocks(3)
    bottom, top = backbone.split_at_trainable()
    x = tf.constant(_images(4))
    boundary = bottom(x)
    assert tuple(boundary.shape) == (4, 2, 2, 56)  # block_13's output at 64 px: stride 32, 0.35 x 160 channels
    # float32 round-off of two op orders: at most 2e-5 seen on feature values up to ~6 (the kernels oneDNN
    # picks differ by CPU), the same bound as the cut comparison above
    np.testing.assert_allclose(top(boundary).numpy(), backbone(x).numpy(), atol=1e-4)
    grads = []
    for run in (lambda: top(boundary), lambda: backbone(x)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(run()))
        grads.append(tape.gradient(loss, backbone.trainable_weights))
    assert len(backbone.trainable_weights) > 0 and all(g is not None for g in grads[0])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5 * np.abs(b.numpy()).max())
    cut = HubBackbone(asset(HUB_035), inference_mode=True, cut="block_12")
    cut.set_trainable_blocks(2)
    bottom, top = cut.split_at_trainable()
    np.testing.assert_allclose(top(bottom(x)).numpy(), cut(x).numpy(), atol=1e-5)
    free = HubBackbone(asset(HUB_035))
    free.set_trainable_blocks(1)
    with pytest.raises(BoundaryUnavailable, match="inference mode"):
        free.split_at_trainable()


def test_a_released_module_is_reused_with_its_pretrained_weights(monkeypatch, tiny_hub):
    """A module goes back to the pool only when its layer is released, never because the garbage
    collector ran: the next layer of the same folder takes the one released last, with the pretrained
    values put back; a module still in use is never shared, and a released layer cannot run. (The
    pool's mechanics, on the small stand-in module: it loads in a fraction of the ImageNet one's time.)"""
    import gc

    from tl_keras.models.backbones import hub

    MODULE_POOL = hub.ModulePool()  # this test's own: what other tests released does not count
    monkeypatch.setattr(hub, "MODULE_POOL", MODULE_POOL)
    first = HubBackbone(tiny_hub)
    pretrained = [v.numpy().copy() for v in first.hub_variables]
    second = HubBackbone(tiny_hub)  # the first is in use: its own module
    assert second.module is not first.module
    first.reinitialize(seed=0)  # the first layer's weights change ...
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(second.hub_variables, pretrained))  # ... not the second's
    module = first.module
    loads = MODULE_POOL.loads
    unreleased = second.module
    del second
    gc.collect()  # unreachable but not released: not handed out
    third = HubBackbone(tiny_hub)
    assert MODULE_POOL.loads == loads + 1 and third.module is not module and third.module is not unreleased
    assert first.release() and not first.release()  # once
    fourth = HubBackbone(tiny_hub)  # the released module: no load, weights as loaded
    assert MODULE_POOL.loads == loads + 1 and fourth.module is module
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(fourth.hub_variables, pretrained))
    x = tf.constant(_images(2))
    np.testing.assert_allclose(fourth(x).numpy(), third(x).numpy(), atol=1e-6)
    with pytest.raises(RuntimeError, match="released its module"):
        first(x)


def test_takes_any_size_reads_the_call_signature_without_loading(tmp_path, tiny_hub):
    """The real module (free height and width in `__call__` and `serving_default`) and
    `save_hub_module`'s (`__call__` only) take any size; a module traced at 64 px does not, nor a
    folder without a SavedModel."""
    assert takes_any_size(asset(HUB_035)) and takes_any_size(tiny_hub)
    module = tf.Module()
    module.__call__ = tf.function(lambda images: tf.reduce_mean(images, [1, 2]),
                                  input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "fixed"))
    assert not takes_any_size(str(tmp_path / "fixed"))
    assert not takes_any_size(str(tmp_path))
