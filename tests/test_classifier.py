import keras
import numpy as np
import pytest
from conftest import HUB_035, KERAS_035, asset

from tl_keras.models.classifier import ImageClassifier, build_classifier


def test_named_layers_any_size_uint8_input_and_float32_softmax():
    model = build_classifier(asset(HUB_035), 3, image_size=64, class_names=["a", "b", "c"])
    assert [layer.name for layer in model.layers] == ["images", "resize", "pixel_range", "backbone", "output_dropout", "predictions"]
    images = np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3)).astype("uint8")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # By default the resize layer frames an image as its centred square: the 50x50 middle of 50x70.
    assert model.crop_to_aspect_ratio and model.get_layer("resize").crop_to_aspect_ratio
    np.testing.assert_allclose(model.predict(images[:, :, 10:60], verbose=0), probabilities, atol=1e-6)
    squeezed = build_classifier(asset(HUB_035), 3, image_size=64, crop_to_aspect_ratio=False)
    squeezed.set_weights(model.get_weights())
    assert np.abs(squeezed.predict(images, verbose=0) - probabilities).max() > 1e-4  # the whole image, squeezed
    assert model.backbone.inference_mode and model.backbone.trainable_weights == []


def test_config_round_trip_keeps_every_argument(tmp_path):
    model = build_classifier("keras:mobilenet_v2", 2, weights=asset(KERAS_035), image_size=64, dropout=0.3, l2=1e-4,
                             class_names=["x", "y"], crop_to_aspect_ratio=False)
    config = model.get_config()
    assert {k: config[k] for k in ("num_classes", "image_size", "pixel_mode", "dropout", "l2", "class_names", "crop_to_aspect_ratio")} == {
        "num_classes": 2, "image_size": 64, "pixel_mode": "symmetric", "dropout": 0.3, "l2": 1e-4, "class_names": ["x", "y"],
        "crop_to_aspect_ratio": False}
    older = ImageClassifier.from_config({k: v for k, v in config.items() if k != "crop_to_aspect_ratio"})
    assert not older.crop_to_aspect_ratio  # saved before the setting existed: trained on squeezed images
    assert model.get_layer("predictions").kernel_regularizer is not None
    path = str(tmp_path / "c.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, ImageClassifier) and reloaded.class_names == ["x", "y"] and not reloaded.crop_to_aspect_ratio
    x = np.random.randint(0, 256, (2, 64, 80, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 2, "dropout": 1.0}, "dropout"),
    ({"num_classes": 2, "l2": -1.0}, "l2"),
    ({"num_classes": 2, "class_names": ["only-one"]}, "class_names"),
])
def test_invalid_arguments_are_rejected_with_their_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_classifier(asset(HUB_035), image_size=64, **kwargs)


def test_keras_load_model_needs_only_import_tl_keras_and_local_hub_backbones_never_import_tf_keras(tmp_path):
    """In a fresh process: a saved classifier loads with `import tl_keras` alone, and neither loading
    it nor building one on a local Hub folder imports tf_keras or tensorflow_hub."""
    from conftest import run_python

    model = build_classifier(asset(HUB_035), 2, image_size=64, class_names=["ants", "bees"])
    path = str(tmp_path / "m.keras")
    model.save(path)
    out = run_python(
        "import sys, numpy as np, keras, tl_keras\n"
        "m = keras.saving.load_model(sys.argv[1])\n"  # safe_mode stays on: no code in the config
        "print(type(m).__name__, m.class_names, m.predict(np.zeros((1, 50, 70, 3)), verbose=0).shape)\n"
        f"built = tl_keras.build_classifier({asset(HUB_035)!r}, 2, image_size=64)\n"
        "built.predict(np.zeros((1, 64, 64, 3), 'float32'), verbose=0)\n"
        "print('tf_keras' in sys.modules, 'tensorflow_hub' in sys.modules)\n",
        path,
    )
    assert out.stdout.strip().splitlines()[-2:] == ["ImageClassifier ['ants', 'bees'] (1, 2)", "False False"]


def test_load_classifier_runs_no_code_from_the_file(tmp_path):
    from tl_keras.models.classifier import load_classifier

    model = build_classifier(asset(HUB_035), 2, image_size=32, class_names=["x", "y"])
    model.save(str(tmp_path / "ok.keras"))
    reloaded = load_classifier(str(tmp_path / "ok.keras"))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

    # A file that would run Python on load: a Lambda layer carries its function's bytecode.
    marker = tmp_path / "ran.txt"
    inputs = keras.Input((2,))
    touch = eval(f"lambda t: t + len(open({str(marker)!r}, 'w').name)")  # no closure: a literal path
    outputs = keras.layers.Lambda(touch)(inputs)
    keras.Model(inputs, outputs).save(str(tmp_path / "evil.keras"))
    marker.unlink(missing_ok=True)
    with pytest.raises(ValueError, match="safe_mode"):
        load_classifier(str(tmp_path / "evil.keras"))
    assert not marker.exists()
    with pytest.raises(ValueError, match="No model file"):
        load_classifier(str(tmp_path / "missing.keras"))


def test_hidden_layers_sit_between_the_backbone_and_the_output_and_round_trip(tmp_path):
    model = build_classifier(asset(HUB_035), 3, image_size=64, hidden_units=(32, 16), dropout=0.1)
    names = [layer.name for layer in model.layers]
    assert names[names.index("backbone") + 1:] == ["hidden_1_dropout", "hidden_1", "hidden_2_dropout", "hidden_2", "output_dropout", "predictions"]
    assert model.get_layer("hidden_1").kernel.shape == (1280, 32) and model.get_layer("hidden_2").activation.__name__ == "relu"
    path = str(tmp_path / "deep.keras")
    model.save(path)
    x = np.random.randint(0, 256, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="hidden_units"):
        build_classifier(asset(HUB_035), 2, image_size=64, hidden_units=(0,))


def test_a_classifier_on_a_cut_backbone_has_the_blocks_below_the_cut():
    model = build_classifier(asset(HUB_035), 2, image_size=64, cut="block_8")
    assert model.backbone.block_names[-1] == "block_8" and len(model.backbone.block_names) == 9
    assert model.predict(np.zeros((1, 64, 64, 3), "uint8"), verbose=0).shape == (1, 2)


@pytest.mark.parametrize("backbone", ["hub", "keras"])
def test_a_keras_file_saved_with_the_flat_layouts_module_paths_still_loads(tmp_path, backbone):
    """A `.keras` file records each layer's Python module; before 0.2 those were the flat modules
    (`tl_keras.classifier`, `tl_keras.hub`, `tl_keras.backbones`). Such a file, made by writing the old
    paths into a file saved now (what else differs between the two is nothing), loads with its weights."""
    import zipfile

    from tl_keras.models.classifier import load_classifier

    source = asset(HUB_035) if backbone == "hub" else "keras:mobilenet_v2"
    model = build_classifier(source, 2, image_size=32, class_names=["x", "y"],
                             **({} if backbone == "hub" else {"weights": asset(KERAS_035)}))
    new = tmp_path / "new.keras"
    model.save(str(new))
    old_paths = {"tl_keras.models.classifier": "tl_keras.classifier", "tl_keras.models.backbones.hub": "tl_keras.hub",
                 "tl_keras.models.backbones.applications": "tl_keras.backbones"}
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert any(f'"{p}"' in text for p in old_paths)  # the file names its modules ...
                for new_path, old_path in old_paths.items():
                    text = text.replace(f'"{new_path}"', f'"{old_path}"')
                assert not any(f'"{p}"' in text for p in old_paths)  # ... by their old names now
                data = text.encode()
            dst.writestr(item, data)
    reloaded = load_classifier(str(old))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
