import os

import pytest
from conftest import HYMENOPTERA, asset

from tl_keras.serving.client import ExportedModel


def test_predict_files_top_k(hymenoptera_result):
    model = ExportedModel(os.path.dirname(hymenoptera_result.export_dir))  # NAME/ -> latest version
    ants = os.path.join(asset(HYMENOPTERA), "val", "ants")
    paths = [os.path.join(ants, f) for f in sorted(os.listdir(ants))[:3]]
    results = model.predict_files(paths, top_k=2)
    assert [r["path"] for r in results] == paths
    for r in results:
        assert [name for name, _ in r["top_k"]] in (["ants", "bees"], ["bees", "ants"])
        assert r["label"] == r["top_k"][0][0]
        assert abs(sum(p for _, p in r["top_k"]) - 1.0) < 1e-4
    # Files are framed as the export's training images were (its recorded centred square): the same
    # as the model framing the whole decoded photos itself, up to rounding at the input size.
    from tl_keras.images.read import read_images

    assert model.crop_to_aspect_ratio
    whole = model.predict(read_images(paths))
    assert [dict(r["top_k"])["ants"] for r in results] == pytest.approx(whole[:, 0].tolist(), abs=0.02)
    with pytest.raises(ValueError, match="Image file not found"):
        model.predict_files(["/no/such.jpg"])


def test_evaluate_on_the_val_folder(hymenoptera_result):
    report = ExportedModel(hymenoptera_result.export_dir).evaluate(asset(HYMENOPTERA), image_size=96)
    assert report["split"] == "val" and report["num_images"] == 153
    assert report["accuracy"] == pytest.approx(hymenoptera_result.metrics["val_accuracy"], abs=0.02)
    assert sum(row["support"] for row in report["per_class"].values()) == 153


def test_an_export_that_records_no_framing_reads_its_files_squeezed(hymenoptera_result, tmp_path):
    """Exports made before `crop_to_aspect_ratio` was recorded were trained on squeezed photos."""
    import json
    import shutil

    from tl_keras.export.saved_model import METADATA_FILE

    older = str(tmp_path / "older" / "1")
    shutil.copytree(hymenoptera_result.export_dir, older)
    path = os.path.join(older, "assets", METADATA_FILE)
    with open(path) as f:
        meta = json.load(f)
    del meta["crop_to_aspect_ratio"]
    with open(path, "w") as f:
        json.dump(meta, f)
    assert ExportedModel(hymenoptera_result.export_dir).crop_to_aspect_ratio
    assert not ExportedModel(older).crop_to_aspect_ratio


def test_evaluate_on_a_flat_folder_uses_every_image(hymenoptera_result, tmp_path):
    import shutil

    for name in ("ants", "bees"):
        source = os.path.join(asset(HYMENOPTERA), "val", name)
        (tmp_path / name).mkdir()
        for f in sorted(os.listdir(source))[:4]:
            shutil.copy(os.path.join(source, f), tmp_path / name / f)
    report = ExportedModel(hymenoptera_result.export_dir).evaluate(str(tmp_path))
    assert report["split"] == "all" and report["num_images"] == 8
    assert [row["support"] for row in report["per_class"].values()] == [4, 4]
    with pytest.raises(ValueError, match="differ from the model's"):
        shutil.rmtree(tmp_path / "bees")
        (tmp_path / "wasps").mkdir()
        shutil.copy(os.path.join(source, f), tmp_path / "wasps" / f)
        ExportedModel(hymenoptera_result.export_dir).evaluate(str(tmp_path))


def test_same_size_images_are_batched_with_the_same_result(hymenoptera_result):
    import numpy as np

    model = ExportedModel(hymenoptera_result.export_dir)
    images = list(np.random.default_rng(0).integers(0, 256, (5, 70, 90, 3)).astype("float32"))
    batched = model.predict(images, batch_size=2)  # same size: stacked and batched
    mixed = model.predict(images + [images[0][:69]])  # sizes differ: one image at a time
    assert batched.shape == (5, 2) and mixed.shape == (6, 2)
    np.testing.assert_allclose(mixed[:5], batched, atol=1e-5)


def test_test_time_flip_agrees_across_keras_the_client_and_the_signatures(hymenoptera_result, tmp_path, capsys):
    """--tta: the Keras model's mean over each image and its mirror image, the client-side average over
    a plain export, and an export with the average inside its three signatures give one answer."""
    import numpy as np
    import tensorflow as tf

    from tl_keras.export.saved_model import export_saved_model, read_metadata

    keras_model = hymenoptera_result.model
    images = hymenoptera_result.data.val.images[:8].astype("float32")
    expected = (keras_model.predict(images, verbose=0) + keras_model.predict(images[:, :, ::-1], verbose=0)) / 2
    plain = ExportedModel(hymenoptera_result.export_dir)
    assert np.abs(plain.predict(images) - expected).max() > 1e-4  # the flip changes the answer ...
    np.testing.assert_allclose(ExportedModel(hymenoptera_result.export_dir, tta=True).predict(images), expected, atol=1e-5)
    inside = export_saved_model(keras_model, str(tmp_path / "tta"), tta=True)
    assert read_metadata(inside)["tta"] == "flip"
    served = ExportedModel(inside)
    assert served.tta and served.tta_inside
    np.testing.assert_allclose(served.predict(images), expected, atol=1e-5)  # ... and the signature averages it
    loaded = tf.saved_model.load(inside)
    u8 = np.clip(np.round(images), 0, 255).astype("uint8")
    as_uint8 = loaded.signatures["serving_uint8"](images=tf.constant(u8))["probabilities"].numpy()
    np.testing.assert_allclose(as_uint8, served.predict(u8.astype("float32")), atol=1e-5)
    paths = hymenoptera_result.data.val.paths[:4]
    encoded = tf.constant([open(p, "rb").read() for p in paths])
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)["probabilities"].numpy()
    np.testing.assert_allclose(from_bytes, expected[:4], atol=1e-4)  # the files decode to the same images
    import json

    from tl_keras.cli.commands import main

    assert main(["evaluate", hymenoptera_result.export_dir, asset(HYMENOPTERA), "--tta", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tta"] == "flip" and report["accuracy"] > 0.7  # majority class: 0.54
    assert main(["predict", hymenoptera_result.export_dir, paths[0], "--tta", "--json", "--top-k", "2"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert dict(row["top_k"])[row["label"]] == pytest.approx(float(expected[0].max()), abs=1e-4)


def test_an_export_is_loaded_once_per_process_while_its_files_are_unchanged(hymenoptera_result, tmp_path):
    import shutil

    from tl_keras.export.saved_model import load_export

    by_version = ExportedModel(hymenoptera_result.export_dir)
    by_name = ExportedModel(os.path.dirname(hymenoptera_result.export_dir))
    assert by_version._loaded is by_name._loaded  # one load serves both
    copy = tmp_path / "model" / "1"
    shutil.copytree(hymenoptera_result.export_dir, copy)
    first = load_export(str(copy))
    assert first is not by_version._loaded and load_export(str(copy)) is first
    os.utime(copy / "saved_model.pb", ns=(0, 0))  # the folder is rewritten: loaded again
    assert load_export(str(copy)) is not first
