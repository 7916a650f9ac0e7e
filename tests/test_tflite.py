"""TFLite export: float32 and dynamic-range int8, labels beside, agreement with the SavedModel."""

import json
import os

import numpy as np
import pytest

from conftest import HYMENOPTERA, asset


@pytest.fixture(scope="module")
def tflite_report(hymenoptera_result, tmp_path_factory):
    from tl_keras.tflite import export_tflite

    return export_tflite(hymenoptera_result.export_dir, str(tmp_path_factory.mktemp("tflite")), check_data=asset(HYMENOPTERA))


def test_both_variants_agree_with_the_saved_model_on_real_val_images(tflite_report):
    f32, int8 = tflite_report["variants"]["float32"], tflite_report["variants"]["dynamic_int8"]
    assert f32["num_check_images"] == int8["num_check_images"] == 153
    assert f32["top1_agreement"] == 1.0 and f32["max_abs_diff"] < 1e-4
    assert int8["top1_agreement"] >= 0.85
    assert int8["bytes"] < f32["bytes"] / 2.5  # int8 weights
    out = tflite_report["output_dir"]
    assert open(os.path.join(out, "labels.txt")).read() == "ants\nbees\n"
    meta = json.load(open(os.path.join(out, "tl_keras.json")))
    assert meta["image_size"] == 96 and "[1, 96, 96, 3]" in meta["tflite_input"]


def test_tflite_file_runs_in_the_interpreter_tensorflow_ships(tflite_report, hymenoptera_result):
    from tl_keras.data import read_images
    from tl_keras.tflite import tflite_predict

    paths = hymenoptera_result.data.val.paths[:4]
    images = np.stack(read_images(paths, 96)).astype("float32")
    lite = tflite_predict(tflite_report["variants"]["float32"]["path"], images)
    np.testing.assert_allclose(lite, hymenoptera_result.model.predict(images, verbose=0), atol=1e-4)


def test_cli_export_tflite_and_errors(hymenoptera_result, tmp_path):
    from tl_keras.cli import main

    assert main(["export-tflite", hymenoptera_result.export_dir, "--output", str(tmp_path / "lite"), "--variants", "float32"]) == 0
    assert sorted(os.listdir(tmp_path / "lite")) == ["labels.txt", "model_float32.tflite", "tl_keras.json"]
    from tl_keras.tflite import export_tflite

    with pytest.raises(ValueError, match="variants"):
        export_tflite(hymenoptera_result.export_dir, str(tmp_path / "x"), variants=["int4"])
