import pytest
from conftest import HUB_035, assert_examples_run, asset

from tl_keras.config import parse_unfreeze_blocks
from tl_keras.models import registry
from tl_keras.models.blocks import group_blocks
from tl_keras.models.classifier import build_classifier
from tl_keras.models.registry import resolve_backbone


def test_bare_names_are_tf_hub_feature_vectors_with_real_handles():
    spec = resolve_backbone("mobilenet_v2")
    assert spec.source == "hub"
    assert spec.handle == "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    assert (spec.image_size, spec.pixel_range, spec.feature_size) == (224, (0.0, 1.0), 1280)
    assert resolve_backbone("ResNet50").handle.endswith("resnet_v2_50/feature_vector/5")


def test_keras_backbones_state_their_pixel_range_and_take_weights():
    spec = resolve_backbone("keras:mobilenet_v2", weights="w.h5", image_size=96)
    assert (spec.source, spec.handle, spec.weights, spec.image_size) == ("keras", "MobileNetV2", "w.h5", 96)
    assert spec.pixel_range == (-1.0, 1.0)
    assert resolve_backbone("keras:resnet50", weights="none").weights is None
    assert resolve_backbone("keras:resnet50").pixel_mode == "caffe"


def test_handles_urls_and_local_folders(tmp_path):
    assert resolve_backbone("https://example.com/model/1").handle == "https://example.com/model/1"
    assert resolve_backbone("hub:https://x/y").handle == "https://x/y"
    kaggle = "google/mobilenet-v2/tensorFlow2/100-224-feature-vector"
    assert resolve_backbone(kaggle + "/2").handle == "https://www.kaggle.com/models/" + kaggle + "/2"
    with pytest.raises(ValueError, match="needs a version number"):
        resolve_backbone(kaggle)
    spec = resolve_backbone(str(tmp_path))
    assert (spec.source, spec.handle) == ("hub", str(tmp_path))


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'mobilenet_v2'"):
        resolve_backbone("mobilenet_v3")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="image_size"):
        resolve_backbone("mobilenet_v2", image_size=8)
    with pytest.raises(ValueError, match="weights"):
        resolve_backbone("mobilenet_v2", weights="x.h5")
    with pytest.raises(ValueError, match="no folder exists"):
        resolve_backbone("./no/such/folder")


def test_group_blocks_attaches_unmatched_names_to_the_block_before():
    names = ["Conv1/kernel", "bn_Conv1/gamma", "block_1_expand/kernel", "block_16_project/kernel", "Conv_1/kernel", "Conv_1_bn/beta"]
    assert group_blocks(names, registry.MOBILENET_BLOCKS) == [("stem", [0, 1]), ("block_1", [2]), ("block_16", [3, 4, 5])]


def test_group_blocks_knows_keras_and_slim_resnet_names_and_model_prefixes():
    keras_names = ["conv1_conv", "conv5_block2_1_conv", "conv5_block3_3_bn"]
    assert [b for b, _ in group_blocks(keras_names, registry.RESNET_BLOCKS)] == ["stem", "conv5_block2", "conv5_block3"]
    slim = ["resnet_v2_50/conv1/weights", "resnet_v2_50/block4/unit_3/bottleneck_v2/conv1/weights", "resnet_v2_50/postnorm/gamma"]
    assert [b for b, _ in group_blocks(slim, registry.RESNET_BLOCKS)] == ["stem", "block4/unit_3"]
    prefixed = ["digits/block_1_conv/kernel", "digits/block_2_conv/kernel"]
    assert [b for b, _ in group_blocks(prefixed)] == ["block_1", "block_2"]


def test_group_blocks_falls_back_to_top_level_scopes():
    names = ["model/dense_a/kernel", "model/dense_a/bias", "model/dense_b/kernel"]
    assert group_blocks(names) == [("dense_a", [0, 1]), ("dense_b", [2])]


def test_parse_unfreeze_blocks():
    assert parse_unfreeze_blocks("all") == "all"
    assert parse_unfreeze_blocks("3") == 3
    assert parse_unfreeze_blocks(None) is None
    for bad in (-1, "some", 1.5, True):
        with pytest.raises(ValueError, match="unfreeze_blocks"):
            parse_unfreeze_blocks(bad)


def test_alpha_is_read_from_keras_weight_file_names():
    assert registry.keras_alpha_from_weights("/x/mobilenet_v2_0.35_224_no_top.h5") == 0.35
    assert registry.keras_alpha_from_weights(None) == 1.0


def test_registry_module_does_not_depend_on_tensorflow():
    source = open(registry.__file__).read()
    assert "import tensorflow" not in source and "import keras" not in source


def test_docstring_examples_run():
    assert_examples_run(registry, 4)


def test_a_local_mobilenet_v2_folder_gets_the_registry_default_depth(tiny_hub):
    """The registry's MobileNetV2 default (8 top blocks) holds for a local copy of the module too (the
    README's offline commands), read from its block names; other modules keep the generic default."""
    from tl_keras.models.registry import (
        MOBILENET_UNFREEZE,
        MOBILENET_UNFREEZE_FAR,
        REGISTRY,
        default_unfreeze,
        resolve_backbone,
    )

    local = resolve_backbone(asset(HUB_035))
    mobilenet = ["stem"] + [f"block_{i}" for i in range(1, 17)]
    assert default_unfreeze(local, mobilenet) == MOBILENET_UNFREEZE == 8
    assert default_unfreeze(local, mobilenet[:13]) == 8  # cut at block_12
    assert default_unfreeze(local, ["stem", "block_1", "block_2", "block_3"]) == 3  # a small net named alike
    resnet = ["stem"] + [f"block{b}/unit_{u}" for b in range(1, 5) for u in (1, 2)]
    assert default_unfreeze(REGISTRY["hub:resnet50"], resnet) == 3
    assert default_unfreeze(local, ["stem", "block_1"]) == 2  # never more than there are
    # Where the run measured no "up" (symmetry dihedral), MobileNetV2 trains 12; other modules their default.
    assert default_unfreeze(local, mobilenet, far_domain=True) == MOBILENET_UNFREEZE_FAR == 12
    assert default_unfreeze(REGISTRY["hub:mobilenet_v2"], mobilenet, far_domain=True) == 12
    assert default_unfreeze(REGISTRY["hub:resnet50"], resnet, far_domain=True) == 3
    assert default_unfreeze(local, ["stem", "block_1", "block_2", "block_3"], far_domain=True) == 3
    mobilenet_model = build_classifier(asset(HUB_035), 2, image_size=32)
    assert (mobilenet_model.default_unfreeze_blocks, mobilenet_model.far_domain_unfreeze_blocks) == (8, 12)
    assert mobilenet_model.get_config()["far_domain_unfreeze_blocks"] == 12
    tiny = build_classifier(tiny_hub, 2, image_size=32)
    assert (tiny.default_unfreeze_blocks, tiny.far_domain_unfreeze_blocks) == (3, 3)
