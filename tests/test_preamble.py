"""The input size a run takes from its photos when `image_size` is unset (`resolve_spec`,
`photo_input_size`), on the real shared sets and on folders of known sizes."""

import os

import numpy as np
import pytest
from conftest import ASSETS, HUB_035, HYMENOPTERA, assert_examples_run, asset

from tl_keras.config import TrainConfig
from tl_keras.models.preamble import MAX_PHOTO_SIZE, photo_input_size, resolve_spec
from tl_keras.models.registry import BackboneSpec

KERAS = BackboneSpec("keras:mobilenet_v2", "keras", "MobileNetV2")


def _photos(root, size_of, per_class=6, fmt="png"):
    """A class folder per entry of `size_of` (class -> (width, height)), `per_class` noise images each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, (width, height) in size_of.items():
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(root / name / f"{i}.{fmt}")
    return str(root)


@pytest.mark.parametrize("name, expected", [
    ("materials_fmd", 384),  # 512x384 photos: their short side, the most it picks
    ("blood_cells", 352),  # 480x360: rounded down to a multiple of 32
    ("hymenoptera", 352),  # photos of many sizes, median short side 369 px
    ("flowers", 224),  # about 240 px: no multiple of 32 above 224 fits
    ("aerial_aid", 224),  # 150 px tiles: never under the backbone's own size
])
def test_the_real_sets_get_their_photos_size_through_the_hub_module(name, expected):
    spec = resolve_spec(asset(os.path.join(ASSETS, "datasets", name)), TrainConfig(backbone=asset(HUB_035)))
    assert spec.image_size == expected
    assert spec.image_size_reason.startswith(f"{expected} px: the training photos' median short side is")


def test_the_size_follows_the_median_of_the_training_files_only(tmp_path):
    """Train photos 400x300 (short side 300 -> 288); a val split of large photos does not count."""
    data = tmp_path / "data"
    _photos(data / "train", {"a": (400, 300), "b": (300, 420)})
    _photos(data / "val", {"a": (1200, 900), "b": (1200, 900)}, per_class=2)
    size, reason = photo_input_size(str(data), KERAS, None)
    assert size == 288 and "median short side is 300 px (12 files read)" in reason and "multiple of 32" in reason


def test_webp_sizes_come_from_pillow_and_large_photos_stop_at_the_cap(tmp_path):
    data = _photos(tmp_path / "data", {"a": (900, 700), "b": (800, 1000)}, fmt="webp")
    size, reason = photo_input_size(data, KERAS, None)
    assert size == MAX_PHOTO_SIZE and f"at most {MAX_PHOTO_SIZE} px" in reason


def test_a_label_file_reads_its_training_rows(tmp_path):
    data = _photos(tmp_path / "photos", {"a": (320, 330), "b": (340, 500)}, per_class=3)
    rows = ["path,label,split"] + [f"{os.path.join(data, c, f'{i}.png')},{c},train" for c in "ab" for i in range(3)]
    rows += [f"{os.path.join(data, 'a', '0.png')},a,val"]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    assert photo_input_size(str(csv), KERAS, None)[0] == 320


def test_a_backbone_of_one_size_and_decoded_images_keep_the_backbone_size(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.w = tf.Variable(tf.ones([3, 4]))
    module.__call__ = tf.function(lambda images: tf.reduce_mean(images, [1, 2]) @ module.w,
                                  input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32)])
    fixed = str(tmp_path / "fixed")
    tf.saved_model.save(module, fixed)
    data = _photos(tmp_path / "data", {"a": (500, 400), "b": (500, 400)}, per_class=2)
    spec = resolve_spec(data, TrainConfig(backbone=fixed))
    assert spec.image_size == 224 and "takes no other" in spec.image_size_reason

    from tl_keras.data.folder import load_image_folder

    folder = load_image_folder(data, image_size=32)
    assert photo_input_size(folder, KERAS, None) == (224, "the backbone's own size (the images are decoded already: their size is not known)")


def test_a_size_you_set_wins_and_says_so():
    spec = resolve_spec(asset(HYMENOPTERA), TrainConfig(backbone=asset(HUB_035), image_size=160))
    assert (spec.image_size, spec.image_size_reason) == (160, "set by `image_size`")


def test_the_chosen_size_is_recorded_and_reruns_the_run(tmp_path, tiny_hub, capsys):
    """train() with image_size unset: the metrics, the summary's reason and the resolved config say
    288 px, and the images the model sees are 288 px."""
    import tl_keras
    from tl_keras.cli.summary import _print_train_summary

    data = _photos(tmp_path / "data", {"a": (400, 300), "b": (300, 400)}, per_class=8)
    result = tl_keras.train(data, backbone=tiny_hub, head_epochs=1, fine_tune_epochs=0, export=False,
                            evaluate=False, checkpoint_dir=None, verbose=0)
    assert result.metrics["image_size"] == 288 == result.config.image_size
    images, _ = next(iter(result.data.dataset("val", batch_size=2)))
    assert result.data.image_size == 288 and images.shape[1:3] == (288, 288)
    assert result.metrics["image_size_choice"]["chosen"] == 288
    assert TrainConfig.from_dict(result.metrics["config"]).image_size == 288
    _print_train_summary(result.metrics)
    assert "  size: 288 px: the training photos' median short side is 300 px (16 files read)" in capsys.readouterr().out


def test_docstring_examples_run():
    from tl_keras.models import preamble

    assert_examples_run(preamble, 2)
