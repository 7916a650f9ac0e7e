"""SavedModel export: TF Serving layout, labels asset, signatures, names, atomic versions."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tl_keras.export.saved_model import (
    export_saved_model,
    latest_version_dir,
    next_version,
    read_labels,
)
from tl_keras.models.classifier import build_classifier


def test_layout_labels_and_signatures(hymenoptera_result):
    path = hymenoptera_result.export_dir
    base, version = os.path.split(path)
    assert version == "1" and os.path.exists(os.path.join(path, "saved_model.pb"))
    assert read_labels(path) == ["ants", "bees"]
    with open(os.path.join(path, "assets", "labels.txt")) as f:
        assert f.read() == "ants\nbees\n"
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.name == "images" and spec.dtype == tf.float32 and spec.shape.as_list() == [None, None, None, 3]
    assert set(serve.structured_outputs) == {"probabilities", "label"}
    assert loaded.signatures["serving_uint8"].structured_input_signature[1]["images"].dtype == tf.uint8


def test_float_and_uint8_signatures_agree_and_labels_follow_argmax(hymenoptera_result):
    loaded = tf.saved_model.load(hymenoptera_result.export_dir)
    images = np.random.default_rng(0).integers(0, 256, (3, 120, 90, 3), dtype=np.uint8)
    a = loaded.signatures["serving_default"](images=tf.constant(images, tf.float32))
    b = loaded.signatures["serving_uint8"](images=tf.constant(images))
    np.testing.assert_allclose(a["probabilities"].numpy(), b["probabilities"].numpy(), atol=1e-6)
    names = np.array(["ants", "bees"])[np.argmax(a["probabilities"].numpy(), axis=-1)]
    assert [x.decode() for x in a["label"].numpy()] == list(names)
    keras_probs = hymenoptera_result.model.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(a["probabilities"].numpy(), keras_probs, atol=1e-5)


def test_backbone_variables_keep_their_source_names(hymenoptera_result):
    reader = tf.train.load_checkpoint(os.path.join(hymenoptera_result.export_dir, "variables", "variables"))
    assert reader.get_variable_to_shape_map()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(hymenoptera_result.export_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    names = {node.variable.name for node in proto.meta_graphs[0].object_graph_def.nodes if node.HasField("variable")}
    assert any(n.startswith("block_16_project/") for n in names), sorted(names)[:10]


def test_saved_model_cli_reads_the_signatures(hymenoptera_result):
    import shutil
    import subprocess

    cli = shutil.which("saved_model_cli")
    assert cli, "saved_model_cli ships with tensorflow"
    out = subprocess.run([cli, "show", "--dir", hymenoptera_result.export_dir, "--tag_set", "serve",
                          "--signature_def", "serving_default"], capture_output=True, text=True, check=True).stdout
    assert "images" in out and "probabilities" in out and "label" in out and "DT_FLOAT" in out


def test_metadata_records_the_input_size_and_the_training_config(hymenoptera_result):
    from tl_keras.config import TrainConfig
    from tl_keras.export.saved_model import read_metadata

    meta = read_metadata(hymenoptera_result.export_dir)
    assert meta["image_size"] == 96 and meta["class_names"] == ["ants", "bees"] and meta["crop_to_aspect_ratio"] is True
    recorded = TrainConfig.from_dict(meta["config"])
    assert recorded == hymenoptera_result.config == TrainConfig.from_dict(hymenoptera_result.metrics["config"])
    assert (recorded.image_size, recorded.head_epochs, recorded.fine_tune_epochs, recorded.unfreeze_blocks) == (96, 3, 2, 2)


def test_the_reloaded_export_lists_its_variables_as_keras_exports_do(hymenoptera_result):
    loaded = tf.saved_model.load(hymenoptera_result.export_dir)
    model = hymenoptera_result.model
    assert len(loaded.variables) == len(model.variables) == len(loaded.tf_variables)
    assert len(loaded.trainable_variables) == len(model.trainable_variables) > 0
    assert len(loaded.trainable_variables) + len(loaded.non_trainable_variables) == len(loaded.variables)
    by_name = {v.name: v.numpy() for v in loaded.trainable_variables}
    for variable in model.trainable_variables:  # the same values under the source names
        np.testing.assert_array_equal(by_name[variable.value.name], variable.numpy())


def test_versions_increment_and_no_staging_folder_is_left(hymenoptera_result, tmp_path):
    base = str(tmp_path / "model")
    first = export_saved_model(hymenoptera_result.model, base)
    second = export_saved_model(hymenoptera_result.model, base)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert next_version(base) == 3 and latest_version_dir(base) == second
    with pytest.raises(ValueError, match="exists already"):
        export_saved_model(hymenoptera_result.model, base, version=1)
    assert sorted(os.listdir(base)) == ["1", "2"]
    with pytest.raises(ValueError, match="class_names"):
        export_saved_model(hymenoptera_result.model, base, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="No SavedModel"):
        latest_version_dir(str(tmp_path))


def _bmp(array):
    """A 24-bit BMP file's bytes (TensorFlow decodes BMP but has no encoder)."""
    import struct

    height, width, _ = array.shape
    row = (width * 3 + 3) // 4 * 4
    pixels = b"".join(array[y, :, ::-1].tobytes().ljust(row, b"\0") for y in range(height - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


@pytest.fixture(scope="module")
def encoded_images(tmp_path_factory):
    """A real JPEG, the real placeholder GIF, and a val photo as PNG, BMP and WebP: name -> bytes."""
    import io

    from conftest import HYMENOPTERA
    from PIL import Image

    folder = os.path.join(HYMENOPTERA, "val", "bees")
    jpeg_path = os.path.join(folder, sorted(os.listdir(folder))[0])
    with open(jpeg_path, "rb") as f:
        jpeg = f.read()
    with open(os.path.join(HYMENOPTERA, "train", "ants", "imageNotFound.gif"), "rb") as f:
        gif = f.read()
    pixels = tf.io.decode_jpeg(jpeg).numpy()[:150, :170]
    webp = io.BytesIO()
    Image.fromarray(pixels).save(webp, "WEBP", quality=90)
    return {"jpeg": jpeg, "gif": gif, "png": tf.io.encode_png(pixels).numpy(), "bmp": _bmp(pixels), "webp": webp.getvalue()}


# A client with plain TensorFlow only: serving_default on a float batch, then serving_bytes on files.
PLAIN_CLIENT = """
import json, sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
out = loaded.signatures["serving_default"](images=tf.constant(np.load(sys.argv[2]), tf.float32))
report = {"float": {"probabilities": out["probabilities"].numpy().tolist(),
                    "labels": [x.decode() for x in out["label"].numpy()]}}
serve = loaded.signatures["serving_bytes"]
blobs = [open(path, "rb").read() for path in sys.argv[3:]]
out = serve(image_bytes=tf.constant(blobs))
report.update({"labels": [l.decode() for l in out["label"].numpy()], "probabilities": out["probabilities"].numpy().tolist()})
for bad in (b"this is not an image", b"", blobs[0][:200]):
    try:
        serve(image_bytes=tf.constant([blobs[0], bad]))
        report.setdefault("errors", []).append(None)
    except tf.errors.InvalidArgumentError as err:
        report.setdefault("errors", []).append(err.message)
report["after_errors"] = serve(image_bytes=tf.constant(blobs[:1]))["label"].numpy()[0].decode()
report["tl_keras_loaded"] = "tl_keras" in sys.modules
print(json.dumps(report))
"""


def test_a_fresh_plain_tensorflow_process_reproduces_probabilities_from_arrays_and_bytes(
        hymenoptera_result, encoded_images, tmp_path):
    import json

    from conftest import run_python

    from tl_keras.images.codec import decode_image

    paths = []
    for name, blob in encoded_images.items():
        paths.append(str(tmp_path / f"image.{name}"))
        with open(paths[-1], "wb") as f:
            f.write(blob)
    images = hymenoptera_result.data.val.images[:6].astype("float32")
    np.save(tmp_path / "batch.npy", images)
    report = json.loads(run_python(PLAIN_CLIENT, hymenoptera_result.export_dir, str(tmp_path / "batch.npy"), *paths)
                        .stdout.strip().splitlines()[-1])
    assert report["tl_keras_loaded"] is False  # serving needs TensorFlow only
    # serving_default on float pixels: the trained Keras model's probabilities.
    expected = hymenoptera_result.model.predict(images, verbose=0)
    np.testing.assert_allclose(np.array(report["float"]["probabilities"]), expected, atol=1e-5)
    assert report["float"]["labels"] == [["ants", "bees"][i] for i in expected.argmax(axis=1)]
    # Same outputs as serving_default on the images decoded the way training decodes them.
    serve = tf.saved_model.load(hymenoptera_result.export_dir).signatures["serving_default"]
    expected = np.concatenate([serve(images=tf.cast(decode_image(blob, 96), tf.float32)[None])["probabilities"].numpy()
                               for blob in encoded_images.values()])
    np.testing.assert_allclose(report["probabilities"], expected, atol=1e-5)
    assert report["labels"] == [["ants", "bees"][i] for i in expected.argmax(1)]
    # And as serving_default frames the whole decoded (non-square) image in its resize layer: the same
    # centred square, up to the bytes path's rounding to uint8 at the input size.
    whole = np.concatenate([serve(images=tf.cast(decode_image(blob), tf.float32)[None])["probabilities"].numpy()
                            for blob in encoded_images.values()])
    np.testing.assert_allclose(report["probabilities"], whole, atol=0.02)
    not_image, empty, truncated = report["errors"]
    assert "is not a JPEG, PNG, GIF, BMP or WebP image" in not_image
    assert "is not a JPEG, PNG, GIF, BMP or WebP image" in empty
    assert truncated is not None  # a cut JPEG is refused by the decoder, with its message
    assert report["after_errors"] == report["labels"][0]  # the process keeps serving


def test_saved_model_cli_runs_the_bytes_signature(hymenoptera_result, encoded_images, tmp_path):
    import shutil
    import subprocess

    batch = tmp_path / "batch.npy"
    np.save(batch, np.array([encoded_images["jpeg"], encoded_images["png"]], dtype=object).astype(bytes))
    out = subprocess.run([shutil.which("saved_model_cli"), "run", "--dir", hymenoptera_result.export_dir,
                          "--tag_set", "serve", "--signature_def", "serving_bytes", "--inputs", f"image_bytes={batch}"],
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "probabilities" in out.stdout and "label" in out.stdout
    assert out.stdout.count("b'bees'") + out.stdout.count("b'ants'") == 2


def test_tf1_session_loader_runs_the_default_signature_and_variables_are_stored_once(hymenoptera_result, tmp_path):
    """TF Serving's C++ loader restores variables the way `saved_model_cli run` (a TF1 session) does."""
    import shutil
    import subprocess

    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).uniform(0, 255, (2, 80, 100, 3)).astype("float32"))
    out = subprocess.run([shutil.which("saved_model_cli"), "run", "--dir", hymenoptera_result.export_dir,
                          "--tag_set", "serve", "--signature_def", "serving_default", "--inputs", f"images={images}"],
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "probabilities" in out.stdout
    stored = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in
                 os.walk(os.path.join(hymenoptera_result.export_dir, "variables")) for f in files)
    weights = sum(np.asarray(v.numpy()).nbytes for v in hymenoptera_result.model.variables)
    assert stored < 1.2 * weights  # each variable once, not a copy per Keras variable


EXPORTER = """
import os, sys, time
from tl_keras.models.classifier import build_classifier
from tl_keras.export.saved_model import export_saved_model
model = build_classifier(sys.argv[1], 2, image_size=32, class_names=["a", "b"])
barrier, count = sys.argv[3], int(sys.argv[4])
if barrier:  # all processes export at the same instant: wait until every one is ready
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    while len(os.listdir(barrier)) < count:
        time.sleep(0.01)
print(export_saved_model(model, sys.argv[2]))
"""


def _spawn(*args):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", EXPORTER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_concurrent_exports_to_one_name_get_distinct_complete_versions(tmp_path, tiny_hub):
    base = str(tmp_path / "model")
    barrier = tmp_path / "ready"
    barrier.mkdir()
    procs = [_spawn(tiny_hub, base, str(barrier), "2") for _ in range(2)]  # two processes, released together
    paths = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        paths.append(out.strip().splitlines()[-1])
    assert sorted(os.path.basename(p) for p in paths) == ["1", "2"]
    assert sorted(os.listdir(base)) == ["1", "2"]
    for path in paths:
        assert tf.saved_model.load(path).signatures["serving_default"] is not None


def test_a_taken_version_number_moves_the_export_to_the_next(hymenoptera_result, tmp_path, monkeypatch):
    """The race window: another process takes the number between our check and our rename."""
    from tl_keras.export import saved_model as export

    base = str(tmp_path / "model")
    first = export_saved_model(hymenoptera_result.model, base)
    monkeypatch.setattr(export, "next_version", lambda _: 1 if not hasattr(export, "_raced") else 2)
    original_rename = os.rename

    def rename(src, dst):
        export._raced = True
        return original_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    try:
        second = export_saved_model(hymenoptera_result.model, base)
    finally:
        del export._raced
    assert os.path.basename(second) == "2" and sorted(os.listdir(base)) == ["1", "2"]
    assert os.path.exists(os.path.join(first, "saved_model.pb"))


def test_an_export_killed_midway_leaves_earlier_versions_untouched(tmp_path):
    import hashlib
    import signal
    import time

    from conftest import HUB_035

    base = str(tmp_path / "model")
    model = build_classifier(HUB_035, 2, image_size=32, class_names=["a", "b"])  # as EXPORTER builds it
    assert export_saved_model(model, base).endswith("1")

    def digest(folder):
        h = hashlib.sha256()
        for root, dirs, files in sorted(os.walk(folder)):
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(name.encode() + f.read())
        return h.hexdigest()

    before = digest(os.path.join(base, "1"))
    proc = _spawn(HUB_035, base, "", "0")
    deadline = time.time() + 120
    while time.time() < deadline and not any(d.startswith(".tmp-") for d in os.listdir(base)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # while the SavedModel is being written
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(d for d in os.listdir(base) if not d.startswith(".")) == ["1"]  # no half version 2
    assert digest(os.path.join(base, "1")) == before
    assert latest_version_dir(base) == os.path.join(base, "1") and next_version(base) == 2
