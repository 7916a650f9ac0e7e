"""SavedModel export: TF Serving layout, labels asset, signatures, names, atomic versions."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tl_keras.export import export_saved_model, latest_version_dir, next_version, read_labels


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


def test_metadata_records_the_input_size(hymenoptera_result):
    from tl_keras.export import read_metadata

    meta = read_metadata(hymenoptera_result.export_dir)
    assert meta["image_size"] == 96 and meta["class_names"] == ["ants", "bees"]


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
