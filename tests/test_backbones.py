"""keras.applications backbones (real 0.35 weights; ResNet50 with random weights) and pixel ranges."""

import keras
import numpy as np
import pytest

from conftest import KERAS_035, asset
from tl_keras.backbones import KerasBackbone, PixelRange, build_backbone
from tl_keras.registry import BackboneDownloadError, resolve_backbone


def test_mobilenet_v2_from_a_weights_file_matches_keras_applications():
    spec = resolve_backbone("keras:mobilenet_v2", weights=asset(KERAS_035), image_size=96)
    backbone = build_backbone(spec)
    assert backbone.alpha == 0.35
    reference = keras.applications.MobileNetV2(include_top=False, weights=KERAS_035, alpha=0.35, input_shape=(96, 96, 3), pooling="avg")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    ours = backbone(PixelRange("symmetric")(pixels)).numpy()
    theirs = reference(keras.applications.mobilenet_v2.preprocess_input(pixels.copy())).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.abs(ours).sum() > 0


def test_block_unfreezing_by_layer_names():
    backbone = KerasBackbone("MobileNetV2", weights=asset(KERAS_035), image_size=64)
    assert backbone.block_names[0] == "stem" and backbone.block_names[-1] == "block_16"
    assert backbone.trainable_weights == []
    assert backbone.set_trainable_blocks(1) == ["block_16"]
    names = {w.path.split("/")[-2] for w in backbone.trainable_weights}
    assert names and all(n.startswith(("block_16", "Conv_1")) for n in names)
    backbone.set_trainable_blocks("all")
    assert len(backbone.trainable_weights) == len(backbone.model.trainable_weights)


def test_inference_mode_keeps_batch_norm_statistics():
    backbone = KerasBackbone("MobileNetV2", weights=asset(KERAS_035), image_size=64, inference_mode=True)
    backbone.set_trainable_blocks("all")
    bn = backbone.model.get_layer("Conv_1_bn")
    before = bn.moving_mean.numpy().copy()
    backbone(np.random.rand(4, 64, 64, 3).astype("float32"), training=True)
    assert np.array_equal(before, bn.moving_mean.numpy())


def test_resnet50_code_path_with_random_weights():
    spec = resolve_backbone("keras:resnet50", weights="none", image_size=32)
    backbone = build_backbone(spec)
    assert backbone.block_names[0] == "stem" and backbone.block_names[-1] == "conv5_block3"
    assert len(backbone.block_names) == 17
    assert backbone.set_trainable_blocks(3) == ["conv5_block1", "conv5_block2", "conv5_block3"]
    features = backbone(np.zeros((1, 32, 32, 3), "float32"))
    assert tuple(features.shape) == (1, 2048)


def test_resnet50_classifier_trains_its_top_block():
    from tl_keras.classifier import build_classifier
    from tl_keras.training import fine_tune

    model = build_classifier("keras:resnet50", 2, weights="none", image_size=32)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.tile([0, 1], 4)
    top = model.backbone.model.get_layer("conv5_block3_3_conv").kernel
    low = model.backbone.model.get_layer("conv4_block6_3_conv").kernel
    top_before, low_before = top.numpy().copy(), low.numpy().copy()
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    history = fine_tune(model, data, head_epochs=1, fine_tune_epochs=1, unfreeze_blocks=1, verbose=0)
    assert history.unfrozen_blocks == ["conv5_block3"]
    assert not np.array_equal(top_before, top.numpy()) and np.array_equal(low_before, low.numpy())


def test_caffe_pixel_range_matches_keras_resnet_preprocessing():
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(PixelRange("caffe")(pixels).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(PixelRange("unit")(pixels).numpy(), pixels / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        PixelRange("zero-one")


def test_missing_weights_file_and_offline_imagenet_are_clear_errors():
    with pytest.raises(ValueError, match="Weights file not found"):
        KerasBackbone("MobileNetV2", weights="/no/such/weights.h5")
    with pytest.raises(ValueError, match="Could not load weights"):
        KerasBackbone("ResNet50", weights=asset(KERAS_035), image_size=32)
    with pytest.raises(BackboneDownloadError, match="local weights file"):
        KerasBackbone("MobileNetV2", weights="imagenet", alpha=0.5, image_size=96)


def test_imagenet_download_on_a_hanging_network_fails_within_the_timeout(monkeypatch, black_hole_url):
    import time

    from keras.src.applications import mobilenet_v2

    monkeypatch.setattr(mobilenet_v2, "BASE_WEIGHT_PATH", black_hole_url)
    monkeypatch.setenv("TL_KERAS_DOWNLOAD_TIMEOUT", "2")
    started = time.monotonic()
    with pytest.raises(BackboneDownloadError, match="local weights file"):
        KerasBackbone("MobileNetV2", weights="imagenet", alpha=0.75, image_size=96)
    assert time.monotonic() - started < 20


def test_cut_at_a_named_block_is_that_layers_pooled_output():
    backbone = KerasBackbone("MobileNetV2", weights=asset(KERAS_035), image_size=96, cut="block_12")
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, alpha=0.35, weights=asset(KERAS_035))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    inner = keras.Model(reference.input, reference.get_layer("block_12_add").output)(x).numpy().mean(axis=(1, 2))
    np.testing.assert_allclose(backbone(x).numpy(), inner, atol=1e-4)
    assert backbone.cut_layer == "block_12_add" and backbone.block_names[-1] == "block_12"
    assert backbone.set_trainable_blocks(1) == ["block_12"]
    config = backbone.get_config()
    assert config["cut"] == "block_12" and KerasBackbone.from_config(config).block_names == backbone.block_names


def test_reinitialize_replaces_the_pretrained_weights_with_a_fresh_draw():
    backbone = KerasBackbone("MobileNetV2", weights=asset(KERAS_035), image_size=32, cut="block_3")
    pretrained = [w.numpy().copy() for w in backbone.model.weights]
    backbone.reinitialize(seed=0)
    fresh = [w.numpy() for w in backbone.model.weights]
    kernels = [(p, f) for w, p, f in zip(backbone.model.weights, pretrained, fresh) if "kernel" in w.path]
    assert kernels and all(not np.allclose(p, f) for p, f in kernels)
    means = [f for w, f in zip(backbone.model.weights, fresh) if "moving_mean" in w.path]
    assert means and all(np.all(m == 0) for m in means)
