"""TFLite export: float32, dynamic-range int8, float16 and full-integer int8 (calibrated on the real
training photos), labels beside, agreement with the SavedModel under LiteRT's interpreter."""

import json
import os

import numpy as np
import pytest
from conftest import HYMENOPTERA, asset


@pytest.fixture(scope="module")
def tflite_report(hymenoptera_result, tmp_path_factory):
    from tl_keras.export.tflite import export_tflite

    return export_tflite(hymenoptera_result.export_dir, str(tmp_path_factory.mktemp("tflite")), check_data=asset(HYMENOPTERA),
                         quantize=["none", "dynamic", "float16", "int8-full"])


def test_every_variant_agrees_with_the_saved_model_on_real_val_images(tflite_report):
    from conftest import HYMENOPTERA_MAJORITY, MARGIN

    variants = tflite_report["variants"]
    f32, dynamic, f16, full = (variants[v] for v in ("float32", "dynamic_int8", "float16", "int8_full"))
    assert tflite_report["interpreter"] == "ai_edge_litert"  # LiteRT, in the test extra
    assert all(v["num_check_images"] == 153 for v in variants.values())
    assert f32["top1_agreement"] == 1.0 and f32["max_abs_diff"] < 1e-4
    assert f16["top1_agreement"] >= 0.97 and f16["max_abs_diff"] < 0.05
    assert dynamic["top1_agreement"] >= 0.85 and full["top1_agreement"] >= 0.85
    assert dynamic["bytes"] < f32["bytes"] / 2.5 and full["bytes"] < f32["bytes"] / 2.5  # int8 weights
    assert f16["bytes"] < f32["bytes"] * 0.6  # float16 weights
    for v in variants.values():  # each variant still classifies the real photos
        assert v["accuracy"] > HYMENOPTERA_MAJORITY + MARGIN, v
    assert abs(f32["accuracy"] - tflite_report["saved_model_accuracy"]) < 1e-9
    out = tflite_report["output_dir"]
    assert sorted(os.listdir(out)) == ["labels.txt", "model_dynamic_int8.tflite", "model_float16.tflite",
                                       "model_float32.tflite", "model_int8_full.tflite", "tl_keras.json"]
    assert open(os.path.join(out, "labels.txt")).read() == "ants\nbees\n"
    meta = json.load(open(os.path.join(out, "tl_keras.json")))
    assert meta["image_size"] == 96 and "[1, 96, 96, 3]" in meta["tflite_input"]
    assert meta["crop_to_aspect_ratio"] is True and "centred square" in meta["tflite_input"]  # how to frame a photo


def test_tflite_predict_matches_keras_under_litert(tflite_report, hymenoptera_result):
    from tl_keras.export.tflite import interpreter_name

    assert interpreter_name() == "ai_edge_litert"  # the interpreter tflite_predict runs: LiteRT's, not tf.lite's
    from tl_keras.export.tflite import tflite_predict
    from tl_keras.images.read import read_images

    paths = hymenoptera_result.data.val.paths[:4]
    images = np.stack(read_images(paths, 96)).astype("float32")
    lite = tflite_predict(tflite_report["variants"]["float32"]["path"], images)
    np.testing.assert_allclose(lite, hymenoptera_result.model.predict(images, verbose=0), atol=1e-4)


def test_full_integer_model_takes_and_gives_integers(tflite_report):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite_report["variants"]["int8_full"]["path"])
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert source["dtype"] == np.uint8 and list(source["shape"]) == [1, 96, 96, 3]
    assert target["dtype"] == np.uint8 and list(target["shape"]) == [1, 2]
    assert source["quantization"] == (1.0, 0)  # calibrated on 0-255 pixels: the uint8 pixels go in as they are


def test_cli_export_tflite_as_a_newcomer_types_it(hymenoptera_result, tflite_report, tmp_path, capsys):
    from tl_keras.cli.commands import main
    from tl_keras.export.tflite import tflite_predict

    # An output ending in .tflite is that one file, not a folder: the float32 model unless asked otherwise.
    assert main(["export-tflite", hymenoptera_result.export_dir, "--output", str(tmp_path / "one" / "model.tflite")]) == 0
    assert os.path.isfile(tmp_path / "one" / "model.tflite") and os.listdir(tmp_path / "one") == ["model.tflite"]
    assert "float32" in capsys.readouterr().out
    assert (tmp_path / "one" / "model.tflite").read_bytes() == open(tflite_report["variants"]["float32"]["path"], "rb").read()
    # int8-full calibrates on the training images the export recorded (hymenoptera/train, still there).
    recorded = json.load(open(os.path.join(hymenoptera_result.export_dir, "assets", "tl_keras.json")))["training_data"]
    assert recorded == os.path.abspath(asset(HYMENOPTERA))
    assert main(["export-tflite", hymenoptera_result.export_dir, "--quantize", "int8-full", "--output", str(tmp_path / "q.tflite")]) == 0
    images = hymenoptera_result.data.val.images.astype("float32")  # all 153 val photos
    predicted = tflite_predict(str(tmp_path / "q.tflite"), images).argmax(1)
    keras_predicted = hymenoptera_result.model.predict(images, verbose=0).argmax(1)
    assert (predicted == keras_predicted).mean() >= 0.85  # calibrated: agrees with the float model
    # Several variants do not fit in one file: a clear error.
    assert main(["export-tflite", hymenoptera_result.export_dir, "--output", str(tmp_path / "two.tflite"),
                 "--quantize", "none", "dynamic"]) == 2
    assert "exactly one variant" in capsys.readouterr().err


def test_int8_full_without_data_says_where_the_recorded_data_went(hymenoptera_result, tmp_path, capsys):
    import shutil

    from tl_keras.cli.commands import main

    moved = tmp_path / "export" / "1"
    shutil.copytree(hymenoptera_result.export_dir, moved)
    meta_path = moved / "assets" / "tl_keras.json"
    meta = json.load(open(meta_path))
    meta["training_data"] = str(tmp_path / "deleted_folder")
    meta_path.write_text(json.dumps(meta))
    assert main(["export-tflite", str(moved), "--output", str(tmp_path / "x"), "--quantize", "int8-full"]) == 2
    err = capsys.readouterr().err
    assert "--representative-data" in err and "deleted_folder" in err and "no longer there" in err
    assert not os.path.exists(tmp_path / "x")
    # An export from before 0.2 records no training data: the same error says so.
    del meta["training_data"]
    meta_path.write_text(json.dumps(meta))
    assert main(["export-tflite", str(moved), "--output", str(tmp_path / "x"), "--quantize", "int8-full"]) == 2
    assert "records no training data" in capsys.readouterr().err
    from tl_keras.export.tflite import export_tflite

    with pytest.raises(ValueError, match="variants"):
        export_tflite(hymenoptera_result.export_dir, str(tmp_path / "x"), variants=["int4"])
