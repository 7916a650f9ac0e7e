"""End to end on the real ants/bees photos: train, export, reload with plain TensorFlow elsewhere."""

import json
import os

import numpy as np

from conftest import HUB_035, HYMENOPTERA, HYMENOPTERA_MAJORITY, KERAS_035, MARGIN, asset, run_python

FRESH_PROCESS = """
import json, sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
out = loaded.signatures["serving_default"](images=tf.constant(images, tf.float32))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "labels": [x.decode() for x in out["label"].numpy()],
                  "tl_keras_loaded": "tl_keras" in sys.modules}))
"""


def test_train_export_and_plain_tensorflow_reproduces_probabilities(hymenoptera_result, tmp_path):
    metrics = hymenoptera_result.metrics
    assert metrics["class_names"] == ["ants", "bees"]
    assert metrics["num_train_images"] == 245 and metrics["num_val_images"] == 153
    assert metrics["head_val_accuracy"] > 0.7 and metrics["val_accuracy"] > 0.7  # majority class: 0.54
    assert metrics["unfrozen_blocks"] == ["block_15", "block_16"]
    boundary = metrics["boundary_cache"]  # phase 2 on the frozen blocks' output, 2 augmented views
    assert boundary["used"] and boundary["views"] == 2 and boundary["computed"] == 2 * 245 + 153
    assert metrics["fine_tune_gain"] == round(metrics["val_accuracy"] - metrics["head_val_accuracy"], 4)
    val = hymenoptera_result.data.val
    images = val.images[:6].astype("float32")
    np.save(tmp_path / "batch.npy", images)
    out = run_python(FRESH_PROCESS, hymenoptera_result.export_dir, str(tmp_path / "batch.npy"))
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["tl_keras_loaded"] is False
    expected = hymenoptera_result.model.predict(images, verbose=0)
    np.testing.assert_allclose(np.array(report["probabilities"]), expected, atol=1e-5)
    assert report["labels"] == [["ants", "bees"][i] for i in expected.argmax(axis=1)]


def test_keras_applications_path_with_the_real_weights_file(tmp_path):
    import tl_keras

    result = tl_keras.train(
        asset(HYMENOPTERA), backbone="keras:mobilenet_v2",
        weights=asset(KERAS_035),
        image_size=96, head_epochs=2, fine_tune_epochs=1, unfreeze_blocks=1, output=str(tmp_path / "k"), verbose=0,
    )
    assert result.metrics["val_accuracy"] > 0.7
    assert result.metrics["unfrozen_blocks"] == ["block_16"]
    assert os.path.exists(os.path.join(result.export_dir, "saved_model.pb"))


def test_the_seed_decides_the_run(tiny_hub):
    """Two processes with one seed give identical weights (tests/test_cli.py reruns an export's config);
    here, another seed with the same settings gives other weights and metrics."""
    import hashlib

    import tl_keras

    def run(seed):
        result = tl_keras.train(asset(HYMENOPTERA), backbone=tiny_hub, image_size=32, head_epochs=2,
                                fine_tune_epochs=1, unfreeze_blocks=1, seed=seed, export=False, evaluate=False,
                                checkpoint_dir=None, verbose=0)
        digest = hashlib.sha256(b"".join(w.numpy().tobytes() for w in result.model.weights)).hexdigest()
        return result.metrics["history"], digest

    (history_3, digest_3), (history_4, digest_4) = run(3), run(4)
    assert digest_3 != digest_4 and history_3 != history_4


def test_a_cut_backbone_with_layer_decay_trains_exports_and_serves_the_same_probabilities(tmp_path):
    import tl_keras
    from tl_keras.serving import ExportedModel

    result = tl_keras.train(
        asset(HYMENOPTERA), backbone=asset(HUB_035), image_size=64, strategy="cut", cut="block_12", unfreeze_blocks=2,
        layer_decay=0.5, hidden_units=(16,), head_epochs=12, fine_tune_epochs=1, output=str(tmp_path / "cut"),
        evaluate=False, verbose=0,
    )
    metrics = result.metrics
    assert metrics["cut"] == "block_12" and metrics["unfrozen_blocks"] == ["block_11", "block_12"]
    assert (metrics["head_epochs"], metrics["fine_tune_epochs"]) == (12, 1)  # explicit unfreeze_blocks wins over the plan
    assert metrics["layer_decay"] == 0.5 and metrics["hidden_units"] == [16]
    assert [layer.name for layer in result.model.layers][4:] == ["feature_norm", "hidden_1_dropout", "hidden_1", "output_dropout", "predictions"]
    assert metrics["val_accuracy"] > HYMENOPTERA_MAJORITY + MARGIN  # block_12 features of 245 photos
    images = result.data.val.images[:6].astype("float32")
    served = ExportedModel(result.export_dir).predict(images)
    np.testing.assert_allclose(served, result.model.predict(images, verbose=0), atol=1e-5)


def test_strategy_names_a_plan_or_a_distribution_not_both():
    import pytest

    import tl_keras

    with pytest.raises(ValueError, match="pass one"):
        tl_keras.train(asset(HYMENOPTERA), backbone=asset(HUB_035), strategy="mirrored", distribute="default")
    with pytest.raises(ValueError, match="transfer-learning strategy"):
        tl_keras.train(asset(HYMENOPTERA), backbone=asset(HUB_035), strategy="fine-tune-some")


def test_each_plan_is_defined_once_and_explicit_values_win():
    from tl_keras.advisor import PLANS, choose_strategy, plan_for
    from tl_keras.config import TrainConfig

    assert plan_for("head-only") == {"unfreeze_blocks": 0}
    assert plan_for("cut", cut="block_8") == {"unfreeze_blocks": 0, "cut": "block_8"}
    assert plan_for("top-blocks") == {}  # the backbone's default number of blocks
    # The forced plan and the advisor's choice of it are the same plan.
    advised = choose_strategy({"a": 5000, "b": 5000}, {"block_5": 0.7, "top": 0.9}, 2, default_blocks=5, num_blocks=17)
    assert advised.strategy == "fine-tune-all"
    assert TrainConfig().with_plan(advised.train_options()) == TrainConfig().with_plan(plan_for("fine-tune-all"))
    assert PLANS["fine-tune-all"] == {"unfreeze_blocks": "all", "hidden_units": (512,), "layer_decay": 0.8}
    # Explicit values win; a plan that fine-tunes nothing gives the head the whole budget.
    config = TrainConfig(head_epochs=3, fine_tune_epochs=2, hidden_units=(16,)).with_plan(plan_for("fine-tune-all"))
    assert (config.unfreeze_blocks, config.hidden_units, config.layer_decay) == ("all", (16,), 0.8)
    head_only = TrainConfig(head_epochs=3, fine_tune_epochs=2).with_plan(plan_for("head-only"))
    assert (head_only.head_epochs, head_only.fine_tune_epochs) == (5, 0)
    assert head_only.with_plan(plan_for("head-only")) == head_only  # applying it again changes nothing
    kept = TrainConfig(head_epochs=3, fine_tune_epochs=2, unfreeze_blocks=2).with_plan(plan_for("cut", cut="block_8"))
    assert (kept.unfreeze_blocks, kept.cut, kept.fine_tune_epochs) == (2, "block_8", 2)


def test_the_resnet50_path_through_a_faithful_stand_in_of_the_hub_module(tmp_path, monkeypatch):
    """`backbone="resnet50"` (TF Hub's imagenet/resnet_v2_50/feature_vector/5) end to end, offline: the
    stand-in in `tests/standins.py` has the module's architecture, variable and op names, input
    contract and output, with random weights, and sits in a TFHUB_CACHE_DIR where `hub.resolve`
    finds it, as a user's cache would hold the real one."""
    import hashlib

    import tl_keras
    from standins import save_resnet_v2_50
    from tl_keras.classifier import build_classifier
    from tl_keras.export import export_saved_model
    from tl_keras.registry import resolve_backbone
    from tl_keras.serving import ExportedModel

    handle = resolve_backbone("resnet50").handle
    save_resnet_v2_50(str(tmp_path / "cache" / hashlib.sha1(handle.encode()).hexdigest()))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    # Random weights learn nothing worth measuring: 24 photos per class and split are enough to run
    # every step, listed as label-file rows.
    rows = [(os.path.join(asset(HYMENOPTERA), split, label, name), label, split)
            for split in ("train", "val") for label in ("ants", "bees")
            for name in sorted(os.listdir(os.path.join(HYMENOPTERA, split, label)))[:24]]
    settings = dict(backbone="resnet50", image_size=32, head_epochs=1, fine_tune_epochs=1, evaluate=False, verbose=0)
    result = tl_keras.train(rows, output=str(tmp_path / "full"), **settings)
    backbone = result.model.backbone
    units = [f"block{b}/unit_{u}" for b, n in enumerate((3, 4, 6, 3), start=1) for u in range(1, n + 1)]
    assert backbone.block_names == ["stem", *units]  # conv1 is the stem; postnorm joins the last unit
    assert result.metrics["unfrozen_blocks"] == ["block4/unit_1", "block4/unit_2", "block4/unit_3"]
    assert result.metrics["boundary_cache"]["used"]  # phase 2 trained block 4 on block 3's cached output
    images = result.data.val.images[:8].astype("float32")
    served = ExportedModel(result.export_dir).predict(images)
    np.testing.assert_allclose(served, result.model.predict(images, verbose=0), atol=1e-5)
    assert result.model.get_layer("predictions").kernel.shape[0] == 2048

    # Cut at a block of the slim module (found by its op names), exported and reloaded.
    cut = build_classifier("resnet50", 2, image_size=32, cut="block3/unit_6", class_names=["ants", "bees"])
    assert cut.backbone.block_names[-1] == "block3/unit_6" and cut.get_layer("predictions").kernel.shape[0] == 1024
    export_dir = export_saved_model(cut, str(tmp_path / "cut"), class_names=["ants", "bees"])
    np.testing.assert_allclose(ExportedModel(export_dir).predict(images), cut.predict(images, verbose=0), atol=1e-5)
