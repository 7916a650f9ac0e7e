"""tf.data input: the real ants/bees photos written to TFRecords, read back as a user's pipeline would."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import HUB_035, HYMENOPTERA, HYMENOPTERA_MAJORITY, MARGIN, asset

from tl_keras.data.folder import load_image_folder
from tl_keras.data.tfdata import DatasetSource, load_datasets

CLASSES = ["ants", "bees"]


def _write_records(path, split):
    """One TFRecord file of (encoded photo bytes, label) for a split of the hymenoptera folders."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for label, name in enumerate(CLASSES):
            folder = os.path.join(asset(HYMENOPTERA), split, name)
            for filename in sorted(os.listdir(folder)):
                contents = open(os.path.join(folder, filename), "rb").read()
                if contents[:3] != b"\xff\xd8\xff":  # the folder's one GIF placeholder: JPEGs only here
                    continue
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[contents])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }))
                writer.write(example.SerializeToString())


def _read_records(path):
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        return tf.io.decode_jpeg(example["image"], channels=3), example["label"]

    return tf.data.TFRecordDataset(str(path)).map(parse)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    for split in ("train", "val"):
        _write_records(root / f"{split}.tfrecord", split)
    return _read_records(root / "train.tfrecord"), _read_records(root / "val.tfrecord")


def test_datasets_decode_to_the_folders_pixels(records):
    train_ds, val_ds = records
    loaded = load_datasets(DatasetSource(train_ds, val_ds, tuple(CLASSES)), image_size=32)
    folder = load_image_folder(asset(HYMENOPTERA), image_size=32)
    jpegs = [i for i, p in enumerate(folder.train.paths) if not p.endswith(".gif")]
    assert loaded.class_names == CLASSES and loaded.validation_source == "folder"
    np.testing.assert_array_equal(loaded.train.labels, folder.train.labels[jpegs])
    np.testing.assert_array_equal(loaded.train.images, folder.train.images[jpegs])  # resized as files are
    np.testing.assert_array_equal(loaded.val.images, folder.val.images)
    assert loaded.train.paths[0] == "train[0]" and loaded.num_found == len(jpegs) + len(folder.val)
    square = val_ds.map(lambda x, y: (tf.cast(tf.image.resize(x, (48, 48)), tf.uint8), y))
    batched = load_datasets(DatasetSource(train_ds, square.batch(7), tuple(CLASSES)), image_size=32)  # batched input
    unbatched = load_datasets(DatasetSource(train_ds, square, tuple(CLASSES)), image_size=32)
    np.testing.assert_array_equal(batched.val.images, unbatched.val.images)
    held_out = load_datasets(DatasetSource(train_ds, None, tuple(CLASSES)), image_size=32, validation_split=0.25)
    assert held_out.validation_source == "split" and len(held_out.val) == pytest.approx(0.25 * held_out.num_used, abs=2)


def test_train_on_tfrecords_learns_and_exports(records, tmp_path):
    import tl_keras

    train_ds, val_ds = records
    result = tl_keras.train(dataset=train_ds, val_dataset=val_ds, class_names=CLASSES, backbone=asset(HUB_035),
                            image_size=64, head_epochs=4, fine_tune_epochs=0, output=str(tmp_path / "m"), verbose=0)
    assert result.metrics["val_accuracy"] > HYMENOPTERA_MAJORITY + MARGIN  # real features, read through tf.data
    assert result.metrics["num_val_images"] == 153 and result.class_names == CLASSES
    labels = open(os.path.join(result.export_dir, "assets", "labels.txt")).read().split()
    assert labels == CLASSES


def test_bad_datasets_are_clear_errors(records):
    import tl_keras

    train_ds, _ = records
    with pytest.raises(ValueError, match="uint8 RGB"):
        DatasetSource(train_ds.map(lambda x, y: (tf.cast(x, tf.float32), y)), None, tuple(CLASSES))
    with pytest.raises(ValueError, match=r"\(image, label\) pairs"):
        DatasetSource(train_ds.map(lambda x, y: x), None, tuple(CLASSES))
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        DatasetSource(train_ds, None, ("ants",))
    with pytest.raises(ValueError, match=r"element 0 has label 5, outside 0..1"):
        load_datasets(DatasetSource(train_ds.map(lambda x, y: (x, y + 5)), None, tuple(CLASSES)), image_size=32)
    with pytest.raises(ValueError, match="over the memory limit"):
        load_datasets(DatasetSource(train_ds, None, tuple(CLASSES)), image_size=32, memory_limit=32 * 32 * 3 * 10)
    with pytest.raises(ValueError, match="`class_names` is required"):
        tl_keras.train(dataset=train_ds)
    with pytest.raises(ValueError, match="either `data_dir` or `dataset=`"):
        tl_keras.train(asset(HYMENOPTERA), dataset=train_ds, class_names=CLASSES)
