"""End to end on the real ants/bees photos: train, export, reload with plain TensorFlow elsewhere."""

import json
import os

import numpy as np
import pytest
from conftest import (
    HUB_035,
    HYMENOPTERA,
    HYMENOPTERA_MAJORITY,
    KERAS_035,
    MARGIN,
    asset,
    hymenoptera_subset,
)


def test_train_reports_the_run_it_made(hymenoptera_result):
    """What the trained fixture's metrics say (its export, reloaded by plain TensorFlow, is
    test_export's test_a_fresh_plain_tensorflow_process_reproduces_probabilities_from_arrays_and_bytes)."""
    metrics = hymenoptera_result.metrics
    assert metrics["class_names"] == ["ants", "bees"]
    assert metrics["num_train_images"] == 245 and metrics["num_val_images"] == 153
    assert metrics["head_val_accuracy"] > 0.7 and metrics["val_accuracy"] > 0.7  # majority class: 0.54
    assert metrics["unfrozen_blocks"] == ["block_15", "block_16"]
    boundary = metrics["boundary_cache"]  # phase 2 on the frozen blocks' output, 2 augmented views
    assert boundary["used"] and boundary["views"] == 2 and boundary["computed"] == 2 * 245 + 153
    assert metrics["fine_tune_gain"] == round(metrics["val_accuracy"] - metrics["head_val_accuracy"], 4)


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


def test_the_seed_decides_the_run(tiny_hub, tmp_path):
    """Two processes with one seed give identical weights (tests/test_cli.py reruns an export's config);
    here, another seed with the same settings gives other weights and metrics."""
    import hashlib

    import tl_keras

    data = hymenoptera_subset(tmp_path / "labels.csv", train=32, val=16)

    def run(seed):
        result = tl_keras.train(data, backbone=tiny_hub, image_size=32, head_epochs=2,
                                fine_tune_epochs=1, unfreeze_blocks=1, seed=seed, export=False, evaluate=False,
                                checkpoint_dir=None, verbose=0)
        digest = hashlib.sha256(b"".join(w.numpy().tobytes() for w in result.model.weights)).hexdigest()
        return result.metrics["history"], digest

    (history_3, digest_3), (history_4, digest_4) = run(3), run(4)
    assert digest_3 != digest_4 and history_3 != history_4


def test_a_cut_backbone_with_layer_decay_trains_exports_and_serves_the_same_probabilities(tmp_path):
    import tl_keras
    from tl_keras.serving.client import ExportedModel

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


def test_a_loaded_folder_brings_its_framing_and_a_config_that_differs_is_refused(tiny_hub):
    import tl_keras
    from tl_keras.config import TrainConfig
    from tl_keras.data.folder import load_image_folder

    folder = load_image_folder(asset(HYMENOPTERA), image_size=32, crop_to_aspect_ratio=False, max_per_class=6)
    result = tl_keras.train(folder, backbone=tiny_hub, head_epochs=1, fine_tune_epochs=0, export=False,
                            evaluate=False, checkpoint_dir=None, verbose=0)
    assert result.config.crop_to_aspect_ratio is False and result.model.crop_to_aspect_ratio is False
    with pytest.raises(ValueError, match="crop_to_aspect_ratio=False but the config says True"):
        tl_keras.train(folder, config=TrainConfig(backbone=tiny_hub, image_size=32))


def test_strategy_names_a_plan_or_a_distribution_not_both():
    import pytest

    import tl_keras

    with pytest.raises(ValueError, match="pass one"):
        tl_keras.train(asset(HYMENOPTERA), backbone=asset(HUB_035), strategy="mirrored", distribute="default")
    with pytest.raises(ValueError, match="transfer-learning strategy"):
        tl_keras.train(asset(HYMENOPTERA), backbone=asset(HUB_035), strategy="fine-tune-some")


def test_each_plan_is_defined_once_and_explicit_values_win():
    from tl_keras.config import TrainConfig
    from tl_keras.tuning.advisor import PLANS, choose_strategy, plan_for

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

    from standins import save_resnet_v2_50

    import tl_keras
    from tl_keras.models.classifier import build_classifier
    from tl_keras.models.registry import resolve_backbone
    from tl_keras.serving.client import ExportedModel
    from tl_keras.training.caches import feature_extractor

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

    # Cut at a block of the slim module (found by its op names): block 3's pooled output. (A cut
    # backbone's export is served and compared in test_a_cut_backbone_with_layer_decay_....)
    cut = build_classifier("resnet50", 2, image_size=32, cut="block3/unit_6", class_names=["ants", "bees"])
    assert cut.backbone.block_names[-1] == "block3/unit_6" and cut.get_layer("predictions").kernel.shape[0] == 1024
    pooled = feature_extractor(cut)(images).numpy()
    assert pooled.shape == (8, 1024) and np.isfinite(pooled).all()


def test_multi_label_side_by_side_flowers_end_to_end(tmp_path, capsys):
    """A real multi-label set (pairs of flower photos side by side, labelled with both classes; see
    benchmarks/multi_label_flowers.py): a sigmoid head trained in both phases on both caches under
    tf.distribute (a one-replica MirroredStrategy), thresholds chosen on val and served by the export,
    the evaluate/predict commands and the TFLite model agreeing with it."""
    import importlib.util
    import sys

    import tensorflow as tf
    from conftest import FLOWERS

    import tl_keras
    from tl_keras.cli.commands import main
    from tl_keras.evaluation.report import multi_label_report
    from tl_keras.export.tflite import export_tflite

    spec = importlib.util.spec_from_file_location("multi_label_flowers", os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "multi_label_flowers.py"))
    builder = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(spec.origin))
    spec.loader.exec_module(builder)
    labels = builder.build(asset(FLOWERS), str(tmp_path / "set"), size=96, per_split={"train": 120, "val": 72})
    result = tl_keras.train(labels, backbone=asset(HUB_035), image_size=160, head_epochs=6, fine_tune_epochs=2,
                            unfreeze_blocks=2, distribute="mirrored", output=str(tmp_path / "model"), verbose=0)
    metrics, val = result.metrics, result.data.val
    assert metrics["multi_label"] and val.labels.shape == (48, 5) and 1.3 < val.labels.sum(1).mean() < 1.7
    assert metrics["feature_cache"]["used"] and metrics["boundary_cache"]["used"] and metrics["boundary_cache"]["views"] == 2
    report = metrics["evaluation"]["val"]
    baseline = float(val.labels.mean(0).mean())  # mAP of constant scores: each class's frequency
    assert report["mean_average_precision"] >= baseline + MARGIN + 0.1, (report["mean_average_precision"], baseline)
    # micro-F1 of the best constant answer (every class predicted for every image; predicting none scores 0):
    # precision = the share of flags set, recall 1.
    flags = float(val.labels.mean())
    every_class_f1 = 2 * flags / (flags + 1)
    assert report["micro_f1"] >= every_class_f1 + MARGIN, (report["micro_f1"], every_class_f1)
    thresholds = [metrics["thresholds"][name] for name in result.class_names]
    # The export serves the thresholds: its labels are the classes at or above them.
    serve = tf.saved_model.load(result.export_dir).signatures["serving_uint8"]
    out = serve(images=tf.constant(val.images))
    probabilities = out["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, result.model.predict(val.images.astype("float32"), verbose=0), atol=1e-5)
    above = probabilities >= np.array(thresholds)
    np.testing.assert_array_equal(out["above_threshold"].numpy(), above)
    assert [x.decode() for x in out["labels"].numpy()] == [";".join(n for n, a in zip(result.class_names, row) if a) for row in above]
    assert multi_label_report(val.labels, probabilities, result.class_names, thresholds)["micro_f1"] == pytest.approx(report["micro_f1"])
    # evaluate and predict from the command line read the thresholds from the export.
    assert main(["evaluate", result.export_dir, labels, "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["mean_average_precision"] == pytest.approx(report["mean_average_precision"], abs=1e-6)
    assert main(["predict", result.export_dir, val.paths[0], "--output", str(tmp_path / "p.csv")]) == 0
    assert capsys.readouterr().out.startswith(f"{val.paths[0]}: [{';'.join(n for n, a in zip(result.class_names, above[0]) if a)}]")
    lite = export_tflite(result.export_dir, str(tmp_path / "m.tflite"), quantize=["none"], check_data=labels, max_check_images=30)
    assert lite["variants"]["float32"]["top1_agreement"] >= 0.98 and lite["variants"]["float32"]["max_abs_diff"] < 1e-4
