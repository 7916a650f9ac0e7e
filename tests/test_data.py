"""Image folders: layouts, splits, decoding, and every skipped file accounted for."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import HYMENOPTERA, asset

from tl_keras.data.folder import load_image_folder
from tl_keras.data.pipeline import make_dataset
from tl_keras.images.codec import resize_uint8
from tl_keras.training.caches import FeatureSet


def _png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(array))


def _photo(seed, size=24, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (size, size, channels), dtype=np.uint8)


def _folder(root, per_class=5, classes=("cats", "dogs")):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(str(root / name / f"{i}.png"), _photo(c * 100 + i))
    return root


def test_real_folder_with_train_and_val_and_the_placeholder_gif_is_flagged():
    folder = load_image_folder(asset(HYMENOPTERA), image_size=64)
    assert folder.class_names == ["ants", "bees"]
    assert (len(folder.train), len(folder.val), folder.validation_source) == (245, 153, "folder")
    assert folder.num_used + len(folder.skipped) == folder.num_found == 398
    flagged = [p for p, _ in folder.warnings]
    assert any(p.endswith("imageNotFound.gif") for p in flagged)
    assert len(flagged) < 5  # photographs are not flagged
    assert folder.train.images.shape == (245, 64, 64, 3) and folder.train.images.dtype == np.uint8


def test_the_colour_count_samples_the_pixels_tensorflows_nearest_resize_picks():
    from tl_keras.images.codec import decode_file
    from tl_keras.images.quality import _colour_count

    def by_tensorflow(image):
        packed = tf.cast(tf.image.resize(image, (64, 64), method="nearest"), tf.int32)
        return len(np.unique((packed[..., 0] * 65536 + packed[..., 1] * 256 + packed[..., 2]).numpy()))

    ants = os.path.join(asset(HYMENOPTERA), "train", "ants")
    photos = [decode_file(tf.io.read_file(os.path.join(ants, name)).numpy()) for name in sorted(os.listdir(ants))[:6]]
    for image in photos + [_photo(1, size=100), _photo(2, size=37)[:, :20], np.zeros((30, 500, 3), np.uint8)]:
        assert _colour_count(image) == by_tensorflow(image), image.shape


def test_images_are_framed_as_their_centred_square_unless_told_to_squeeze():
    """The loader's framing (real photos, landscape and portrait): the centred square of the short
    side, resized; `crop_to_aspect_ratio=False` squeezes the whole photo; a square image is the same
    either way; and the classifier's `resize` layer frames a raw photo as the loader does."""
    import keras

    from tl_keras.images.codec import decode_file

    def resized(image):
        return tf.image.resize(image, (64, 64), antialias=True).numpy().round().clip(0, 255).astype(np.uint8)

    ants = os.path.join(asset(HYMENOPTERA), "train", "ants")
    names = sorted(os.listdir(ants))[:6] + ["1473187633_63ccaacea6.jpg", "154124431_65460430f2.jpg"]  # 441x500, 343x496
    raws = [open(os.path.join(ants, name), "rb").read() for name in names]
    shapes = set()
    for raw in raws:
        whole = decode_file(raw)
        height, width = whole.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        framed = decode_file(raw, 64)  # through TensorFlow's decoder and ops
        np.testing.assert_array_equal(framed, resized(whole[top:top + side, left:left + side]))
        np.testing.assert_array_equal(resize_uint8(whole, 64), framed)  # a decoded array: cut in NumPy
        np.testing.assert_array_equal(decode_file(raw, 64, crop_to_aspect_ratio=False), resized(whole))
        layer = keras.layers.Resizing(64, 64, antialias=True, crop_to_aspect_ratio=True)
        assert np.abs(keras.ops.convert_to_numpy(layer(whole.astype("float32"))) - framed).max() <= 0.5 + 1e-3
        shapes.add("landscape" if width > height else "portrait" if height > width else "square")
    assert {"landscape", "portrait"} <= shapes
    square = _photo(3, size=50)
    np.testing.assert_array_equal(resize_uint8(square, 32), resize_uint8(square, 32, crop_to_aspect_ratio=False))
    # Every size a decoded file is resized to (the run's, the data checks' thumbnails) shares one graph:
    # a graph per size made TensorFlow warn about retracing in processes that use several.
    from tl_keras.images import codec

    traces = codec._compiled_resize.experimental_get_tracing_count()
    for size in (24, 40, 56, 72, 88, 104, 120):
        assert resize_uint8(whole, size).shape == (size, size, 3)
    assert codec._compiled_resize.experimental_get_tracing_count() - traces <= 1
    # One default everywhere: the config's, the loaders' and the classifier's.
    import inspect

    from tl_keras.config import TrainConfig
    from tl_keras.data.label_files import load_label_file
    from tl_keras.data.tfdata import load_datasets
    from tl_keras.models.classifier import build_classifier

    for function in (load_image_folder, load_label_file, load_datasets, build_classifier, decode_file, resize_uint8):
        assert inspect.signature(function).parameters["crop_to_aspect_ratio"].default is TrainConfig().crop_to_aspect_ratio


def test_flat_folder_gets_a_seeded_stratified_split(tmp_path):
    root = _folder(tmp_path / "data", per_class=10)
    a = load_image_folder(str(root), image_size=16, validation_split=0.2, seed=1)
    b = load_image_folder(str(root), image_size=16, validation_split=0.2, seed=1)
    c = load_image_folder(str(root), image_size=16, validation_split=0.2, seed=2)
    assert a.validation_source == "split"
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths
    assert sorted(np.bincount(a.val.labels)) == [2, 2]
    assert not set(a.val.paths) & set(a.train.paths)


def test_bad_files_are_skipped_and_reported_by_name_and_reason(tmp_path):
    root = _folder(tmp_path / "data", per_class=3)
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "cats" / "notes.jpg").write_text("this is text, not a JPEG")
    (root / "dogs" / "readme.txt").write_text("hello")
    (root / "dogs" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    good = tf.io.encode_jpeg(_photo(7, 64)).numpy()
    (root / "dogs" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    _png(str(root / "dogs" / "gray.png"), _photo(8, channels=1))
    _png(str(root / "dogs" / "rgba.png"), _photo(9, channels=4))
    folder = load_image_folder(str(root), image_size=16, validation_split=0.3)
    reasons = {os.path.basename(p): r for p, r in folder.skipped}
    assert reasons["empty.jpg"].startswith("empty file")
    assert "cannot be decoded" in reasons["notes.jpg"]
    assert "not an image file type" in reasons["readme.txt"]
    assert reasons[".DS_Store"] == "hidden file"
    used = {os.path.basename(p) for s in folder.splits.values() for p in s.paths}
    assert {"gray.png", "rgba.png"} <= used
    assert folder.num_used + len(folder.skipped) == folder.num_found == 13
    assert reasons["truncated.jpg"] == "cannot be decoded as an image (jpeg::Uncompress failed. Invalid JPEG data or crop window.)"
    assert reasons["notes.jpg"].startswith("cannot be decoded as an image (Unknown image file format.")
    assert "skipped" in folder.summary() and "notes.jpg" in folder.summary()


def test_grayscale_rgba_and_gif_become_rgb(tmp_path):
    root = tmp_path / "d"
    _png(str(root / "a" / "gray.png"), np.full((10, 10, 1), 200, np.uint8))
    _png(str(root / "a" / "rgba.png"), np.dstack([np.full((10, 10, 3), 50, np.uint8), np.full((10, 10, 1), 10, np.uint8)]))
    _png(str(root / "b" / "x.png"), np.full((10, 10, 3), 90, np.uint8))
    folder = load_image_folder(str(root), image_size=8, validation_split=0.5)
    decoded = {os.path.basename(p): image for s in folder.splits.values() for p, image in zip(s.paths, s.images)}
    assert decoded["gray.png"].shape == (8, 8, 3) and (decoded["gray.png"] == 200).all()  # grey to all channels
    assert decoded["rgba.png"].shape == (8, 8, 3) and (decoded["rgba.png"] == 50).all()  # alpha dropped
    # TensorFlow cannot write GIFs; the real placeholder GIF decodes to RGB.
    real_gif = os.path.join(asset(HYMENOPTERA), "train", "ants", "imageNotFound.gif")
    from tl_keras.images.read import read_images

    assert read_images([real_gif])[0].shape == (300, 300, 3)


def test_structural_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        load_image_folder(str(tmp_path / "missing"))
    _folder(tmp_path / "one", classes=("only",))
    with pytest.raises(ValueError, match="at least 2 classes"):
        load_image_folder(str(tmp_path / "one"))
    root = tmp_path / "split"
    _folder(root / "train")
    _folder(root / "val", classes=("cats", "birds"))
    with pytest.raises(ValueError, match="differ"):
        load_image_folder(str(root))
    empty = _folder(tmp_path / "empty")
    for f in (empty / "dogs").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="'dogs' has no usable image"):
        load_image_folder(str(empty))


def test_memory_and_streaming_pipelines_yield_the_same_batches(tmp_path):
    root = _folder(tmp_path / "data", per_class=4)
    cached = load_image_folder(str(root), image_size=16, validation_split=0.5)
    streamed = load_image_folder(str(root), image_size=16, validation_split=0.5, memory_limit=0)
    assert streamed.train.images is None and cached.train.images is not None
    a = next(iter(cached.dataset("val", batch_size=8)))
    b = next(iter(streamed.dataset("val", batch_size=8)))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_training_pipeline_shuffles_and_augments_deterministically(tmp_path):
    root = _folder(tmp_path / "data", per_class=6)
    folder = load_image_folder(str(root), image_size=16, validation_split=0.5)
    first = [x.numpy() for x, _ in folder.dataset("train", batch_size=6, training=True)]
    again = [x.numpy() for x, _ in folder.dataset("train", batch_size=6, training=True)]
    plain = [x.numpy() for x, _ in folder.dataset("train", batch_size=6, training=False)]
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], plain[0])
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(folder.train, 16, batch_size=0)


def test_every_pipeline_runs_without_tf_data_autotuning(tmp_path):
    """Keras makes an iterator per epoch; with autotuning on, tearing one down stalled epochs for
    seconds (benchmarks/epoch_stalls.py). Every dataset tl_keras builds turns it off."""
    root = _folder(tmp_path / "data", per_class=4)
    datasets = []
    for kwargs in ({}, {"memory_limit": 0}):  # in memory, and streamed from the files
        folder = load_image_folder(str(root), image_size=16, validation_split=0.5, **kwargs)
        datasets += [folder.dataset("val", batch_size=4), folder.dataset("train", batch_size=4, training=True)]
    features = FeatureSet(train=np.zeros((2, 4, 3), np.float32), train_labels=np.array([0, 1, 0, 1]),
                          val=np.zeros((2, 3), np.float32), val_labels=np.array([0, 1]), batch_size=2)
    datasets += list(features.datasets())
    for ds in datasets:
        assert ds.options().autotune.enabled is False and ds.options().deterministic is True
        assert sum(len(y) for _, y in ds) in (2, 4)  # and still yields every element


def _passes(ds, n):
    return [np.concatenate([np.concatenate([x.numpy().reshape(len(y), -1), y.numpy()[:, None]], 1) for x, y in ds])
            for _ in range(n)]


def test_each_epoch_is_a_function_of_seed_and_epoch_only(tmp_path):
    """What makes a resumed run repeat an uninterrupted one: epoch e's data ignores earlier passes."""
    from tl_keras.data.epochs import epoch_variable

    root = _folder(tmp_path / "data", per_class=6)
    for memory_limit in (None, 0):  # in memory, and streamed from the files
        kwargs = {} if memory_limit is None else {"memory_limit": memory_limit}
        folder = load_image_folder(str(root), image_size=16, validation_split=0.5, **kwargs)
        uninterrupted = _passes(folder.dataset("train", batch_size=4, training=True), 3)
        assert not np.array_equal(uninterrupted[0], uninterrupted[1])  # reshuffled and re-augmented
        resumed_ds = folder.dataset("train", batch_size=4, training=True)
        epoch_variable(resumed_ds).assign(2)
        np.testing.assert_array_equal(_passes(resumed_ds, 1)[0], uninterrupted[2])
        labels = sorted(uninterrupted[1][:, -1].tolist())
        assert labels == sorted(folder.train.labels.tolist())  # every image once per epoch
    assert epoch_variable(folder.dataset("val", batch_size=4)) is None


def test_folds_partition_train_and_val_stratified_and_share_decoded_images():
    folder = load_image_folder(asset(HYMENOPTERA), image_size=32)
    folds = folder.folds(3)
    pooled = sorted(folder.train.paths + folder.val.paths)
    assert sorted(p for f in folds for p in f.val.paths) == pooled  # every image validates exactly once
    for f in folds:
        assert sorted(f.train.paths + f.val.paths) == pooled and not set(f.train.paths) & set(f.val.paths)
        counts = np.bincount(f.val.labels)
        assert abs(counts[0] - (70 + 124) / 3) <= 1 and abs(counts[1] - (83 + 121) / 3) <= 1  # stratified
        index = f.val.paths.index(folder.val.paths[0]) if folder.val.paths[0] in f.val.paths else None
        if index is not None:
            np.testing.assert_array_equal(f.val.images[index], folder.val.images[0])
    assert [f.validation_source for f in folds] == ["fold 1 of 3", "fold 2 of 3", "fold 3 of 3"]
    with pytest.raises(ValueError, match="folds"):
        folder.folds(1)


def test_count_images_lists_without_decoding_and_max_per_class_samples():
    from tl_keras.data.sources import count_images

    assert count_images(asset(HYMENOPTERA)) == {"ants": 124, "bees": 121}  # imageNotFound.gif is listed: it is a .gif
    sample = load_image_folder(asset(HYMENOPTERA), image_size=32, max_per_class=10)
    assert np.bincount(sample.train.labels).tolist() == [10, 10] and np.bincount(sample.val.labels).tolist() == [10, 10]
    again = load_image_folder(asset(HYMENOPTERA), image_size=32, max_per_class=10)
    assert again.train.paths == sample.train.paths  # seeded


def test_short_sides_read_headers_and_training_files_list_the_train_split(tmp_path):
    """`training_files` lists hymenoptera's train split only; `short_sides` gives Pillow's sizes for
    the real JPEGs, reads on past a header longer than its first read, and leaves out what has none."""
    from PIL import Image

    from tl_keras.data.sources import count_images, training_files
    from tl_keras.images.read import short_sides

    files = training_files(asset(HYMENOPTERA))
    assert len(files) == sum(count_images(asset(HYMENOPTERA)).values()) and all("/train/" in f for f in files)
    picked = files[:20]
    expected = []
    for path in picked:
        with Image.open(path) as image:
            expected.append(min(image.size))
    assert short_sides(picked) == expected
    assert short_sides(picked[:5], header_bytes=600) == expected[:5]  # EXIF and tables run past 600 bytes
    (tmp_path / "notes.txt").write_text("not an image")
    assert short_sides([str(tmp_path / "notes.txt"), str(tmp_path / "missing.jpg"), picked[0]]) == expected[:1]
