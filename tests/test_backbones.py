"""keras.applications backbones (real 0.35 weights; ResNet50 with random weights) and pixel ranges."""

import keras
import numpy as np
import pytest
from conftest import KERAS_035, asset

from tl_keras.models.backbones.applications import (
    KerasBackbone,
    PixelRange,
    build_backbone,
)
from tl_keras.models.registry import BackboneDownloadError, resolve_backbone


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
    from tl_keras.models.classifier import build_classifier
    from tl_keras.training.phases import fine_tune

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


# Keras-Hub presets. Nothing downloads here: a small ResNet (4 stacks of one basic block) with random
# weights and its image converter (ImageNet mean and std) are saved to a local preset folder, as
# `save_to_preset` writes them, and loaded by path.
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 64, 64, 64],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block")
    converter = keras_hub.layers.ResNetImageConverter(image_size=(64, 64), scale=list(1 / (255 * IMAGENET_STD)),
                                                      offset=list(-IMAGENET_MEAN / IMAGENET_STD))
    folder = str(tmp_path_factory.mktemp("keras_hub") / "resnet_small")
    backbone.save_to_preset(folder)
    converter.save_to_preset(folder)
    return folder


def test_keras_hub_preset_folder_brings_its_preprocessing_size_and_blocks(resnet_preset):
    import keras_hub

    spec = resolve_backbone("keras_hub:" + resnet_preset)
    assert (spec.source, spec.image_size, spec.pixel_mode) == ("keras_hub", 64, "raw")  # the converter's size
    backbone = build_backbone(spec)
    assert backbone.block_names == ["stem", "stack0_block0", "stack1_block0", "stack2_block0", "stack3_block0"]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    reference = keras_hub.models.Backbone.from_preset(resnet_preset)
    converted = keras_hub.layers.ImageConverter.from_preset(resnet_preset)(pixels)
    np.testing.assert_allclose(converted, (pixels / 255 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-4)
    np.testing.assert_allclose(backbone(pixels), keras.ops.mean(reference(converted), axis=(1, 2)), atol=1e-5)
    assert backbone.set_trainable_blocks(1) == ["stack3_block0"]
    assert backbone.trainable_weights and all("stack3_block0" in w.path for w in backbone.trainable_weights)


def test_keras_hub_backbone_trains_both_phases_exports_and_reloads(resnet_preset, tmp_path):
    """The whole path on real photos: both caches, the boundary split inside the residual stacks,
    the export (its predictions are the model's), and the CLI flag. Random weights: no accuracy bar."""
    from conftest import hymenoptera_subset

    import tl_keras
    from tl_keras.cli.commands import main
    from tl_keras.config import TrainConfig

    data = hymenoptera_subset(tmp_path / "labels.csv", train=16, val=16)
    result = tl_keras.train(data, backbone="keras_hub:" + resnet_preset, head_epochs=2, fine_tune_epochs=1,
                            unfreeze_blocks=2, restore_best=False, output=str(tmp_path / "model"), verbose=0)
    metrics = result.metrics
    assert metrics["unfrozen_blocks"] == ["stack2_block0", "stack3_block0"]
    assert metrics["feature_cache"]["used"] and metrics["boundary_cache"]["used"], metrics["boundary_cache"]
    assert metrics["boundary_cache"]["shape"] == [8, 8, 64]  # stack1's output at 64 px
    val = result.data.dataset("val", batch_size=16)
    full = result.model.evaluate(val, verbose=0, return_dict=True)
    assert full["loss"] == pytest.approx(result.history.last("val_loss"), abs=1e-4)
    exported = tl_keras.ExportedModel(result.export_dir).predict(result.data.val.images)
    np.testing.assert_allclose(exported, result.model.predict(val, verbose=0), atol=1e-5)
    out = tmp_path / "config.json"
    assert main(["train", data, "--backbone", "keras_hub:" + resnet_preset, "--save-config", str(out)]) == 0
    assert TrainConfig.load(str(out)).backbone == "keras_hub:" + resnet_preset


def test_keras_hub_remote_presets_fail_offline_and_the_package_is_named(monkeypatch):
    with pytest.raises(BackboneDownloadError, match="(?s)Keras-Hub preset .resnet_18_imagenet.*keras_hub:FOLDER"):
        build_backbone(resolve_backbone("keras_hub:resnet_18_imagenet"))
    with pytest.raises(ValueError, match="not a Keras-Hub preset folder: it has no config.json"):
        resolve_backbone("keras_hub:" + asset(KERAS_035).rsplit("/", 1)[0])
    monkeypatch.setitem(__import__("sys").modules, "keras_hub", None)
    with pytest.raises(ImportError, match=r'pip install "tl_keras\[keras-hub\]"'):
        build_backbone(resolve_backbone("keras_hub:resnet_18_imagenet"))
