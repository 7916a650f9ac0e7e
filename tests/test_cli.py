"""The tl-keras command line, run as a user runs it."""

import json
import os
import subprocess
import sys

import pytest
from conftest import (
    HUB_035,
    HYMENOPTERA,
    HYMENOPTERA_MAJORITY,
    HYMENOPTERA_POOLED_MAJORITY,
    MARGIN,
    asset,
    hymenoptera_subset,
)

CLI = [sys.executable, "-m", "tl_keras.cli"]


def _run(*args, check=True):
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        pytest.fail(f"tl-keras {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_help_everywhere(capsys):
    from tl_keras.cli.commands import main

    assert "usage: tl-keras" in _run("--help").stdout  # once as a user runs it, then every command in-process
    for command in ("train", "advise", "lr-find", "predict", "evaluate", "export-tflite", "export-onnx", "serve", "embed", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and f"usage: tl-keras {command}" in capsys.readouterr().out


def _main(capsys, *args):
    """Runs `tl-keras ARGS` in this process (no TensorFlow start-up); returns its exit code and stdout."""
    from tl_keras.cli.commands import main

    code = main(list(args))
    return code, capsys.readouterr().out


def test_train_predict_evaluate(tmp_path, capsys):
    metrics_path = tmp_path / "metrics.json"
    code, out = _main(capsys, "train", asset(HYMENOPTERA), "--backbone", asset(HUB_035), "--image-size", "64",
                      "--batch-size", "32", "--head-epochs", "2", "--fine-tune-epochs", "1", "--unfreeze-blocks", "1,2",
                      "--learning-rate", "0.001", "--dropout", "0.2", "--seed", "3", "--output", str(tmp_path / "ants_bees"),
                      "--metrics-json", str(metrics_path), "--tta", "--report", str(tmp_path / "data.html"))
    assert code == 0 and "Epoch 1/2" in out  # Keras progress
    assert f"data report       {tmp_path / 'data.html'}" in out
    assert "symmetry          flip (not measured: 153 val images, fewer than the 200" in out
    assert "epochs at lr 0.0001, constant schedule" in out  # auto: constant where the turns were not chosen
    assert "tl-keras train summary" in out and "imageNotFound.gif" in out
    assert "on cached boundary activations [2, 2, " in out and "of 2 augmented views per training image" in out
    assert "(phase 2: " in out and " over the head" in out
    metrics = json.loads(metrics_path.read_text())
    # --unfreeze-blocks 1,2: phase 2 ran at both depths from the head; the summary and metrics say
    # what each scored, and the run went on with the chosen one.
    assert "tried top  1 blocks" in out and "tried top  2 blocks" in out
    search = metrics["depth_search"]
    assert [t["unfreeze_blocks"] for t in search] == [1, 2] and all(t["boundary_cache"] for t in search)
    assert metrics["config"]["unfreeze_blocks"] == [1, 2]
    assert metrics["phase_two_depth"]["reason"] == "searched, unfreeze_blocks=(1, 2)" and "  depth: searched" in out
    beaten, chosen = [t for t in search if t["beat_head"]], [t for t in search if t["chosen"]]
    assert metrics["fine_tune_kept"] == bool(beaten) and len(chosen) == (1 if beaten else 0)
    if beaten:  # the lowest val_loss among the depths that beat the head; its blocks were trained
        assert chosen[0]["val_loss"] == min(t["val_loss"] for t in beaten)
        assert len(metrics["unfrozen_blocks"]) == chosen[0]["unfreeze_blocks"]
    for key in ("head_val_accuracy", "val_accuracy", "class_names", "export_dir", "num_train_images",
                "num_val_images", "skipped_files", "train_seconds"):
        assert key in metrics, key
    assert metrics["export_dir"] == str(tmp_path / "ants_bees" / "1")
    assert metrics["num_train_images"] + metrics["num_val_images"] + len(metrics["skipped_files"]) == 398
    assert metrics["val_accuracy"] > HYMENOPTERA_MAJORITY + MARGIN
    issues = metrics["data_check"]["label_issues"]  # the report shows the label check train ran on its features
    assert (tmp_path / "data.html").read_text().count("<tr class='label-issue'>") == min(len(issues), 200)

    image = os.path.join(asset(HYMENOPTERA), "val", "bees", sorted(os.listdir(os.path.join(HYMENOPTERA, "val", "bees")))[0])
    code, out = _main(capsys, "predict", metrics["export_dir"], image, "--top-k", "2", "--json")
    predicted = json.loads(out)
    assert code == 0 and predicted[0]["path"] == image and len(predicted[0]["top_k"]) == 2
    assert _main(capsys, "predict", str(tmp_path / "ants_bees"), image)[1].startswith(image + ": ")

    code, out = _main(capsys, "evaluate", metrics["export_dir"], asset(HYMENOPTERA), "--json")
    report = json.loads(out)
    # --tta at training: the report and the export's signatures average each image with its mirror
    # image, so the export evaluates exactly as the run reported.
    assert report["num_images"] == 153 and report["tta"] == "flip" and metrics["config"]["tta"] is True
    assert report["confusion_matrix"] == metrics["evaluation"]["val"]["confusion_matrix"]
    assert report["accuracy"] == pytest.approx(metrics["evaluation"]["val"]["accuracy"], abs=1e-9)

    recorded = os.path.join(metrics["export_dir"], "assets", "tl_keras.json")
    assert json.load(open(recorded))["config"] == metrics["config"]
    assert metrics["config"]["seed"] == 3 and metrics["config"]["image_size"] == 64


def test_an_exports_config_reruns_its_training_in_a_new_process(tmp_path, capsys, tiny_hub):
    """The export records the resolved config; training from it in a new process, as a user runs the
    command, reruns the run: same seed, same history, same weights. (The mechanics on the small
    stand-in module; test_train_predict_evaluate checks the record on the real backbone.)"""
    metrics_path = tmp_path / "metrics.json"
    data = hymenoptera_subset(tmp_path / "labels.csv", train=48, val=40)
    code, _ = _main(capsys, "train", data, "--backbone", tiny_hub, "--image-size", "32", "--head-epochs", "2",
                    "--fine-tune-epochs", "2", "--unfreeze-blocks", "1", "--seed", "3", "--output", str(tmp_path / "first"),
                    "--metrics-json", str(metrics_path), "--no-evaluate")
    metrics = json.loads(metrics_path.read_text())
    recorded = os.path.join(metrics["export_dir"], "assets", "tl_keras.json")
    assert code == 0 and json.load(open(recorded))["config"] == metrics["config"]
    again_path = tmp_path / "again.json"
    _run("train", data, "--config", recorded, "--output", str(tmp_path / "again"),
         "--metrics-json", str(again_path), "--no-evaluate")
    again = json.loads(again_path.read_text())
    assert again["history"] == metrics["history"] and again["config"] == metrics["config"]
    assert len(again["history"]["val_loss"]) == 4  # both phases ran
    first, second = _export_weights(metrics["export_dir"]), _export_weights(again["export_dir"])
    assert first.keys() == second.keys() and len(first) > 10
    assert all((first[name] == second[name]).all() for name in first)  # two processes, one seed: every weight, bit for bit


def _export_weights(export_dir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in name}


def test_errors_are_one_clear_line_and_exit_2(tmp_path, capsys):
    from tl_keras.cli.commands import main

    bad = _run("train", str(tmp_path / "nope"), "--backbone", asset(HUB_035), check=False)  # once as a user runs it
    assert bad.returncode == 2 and "not a folder" in bad.stderr and "Traceback" not in bad.stderr
    assert main(["train", asset(HYMENOPTERA), "--backbone", "mobilenet_v3"]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert main(["train", asset(HYMENOPTERA), "--backbone", "mobilenet_v2"]) == 2
    offline = capsys.readouterr().err
    assert "Could not download the backbone" in offline and "--backbone /path/to/folder" in offline
    # The data is checked (by listing) before the default backbone's download is tried.
    for command in ("train", "advise", "lr-find"):
        assert main([command, str(tmp_path / "nope")]) == 2
        err = capsys.readouterr().err
        assert "not a folder" in err and "download" not in err, (command, err)
    (tmp_path / "data" / "cats").mkdir(parents=True)
    (tmp_path / "data" / "dogs").mkdir()
    (tmp_path / "data" / "cats" / "notes.txt").write_text("to do: add photos")
    (tmp_path / "data" / "dogs" / "a.jpg").write_bytes(b"")
    assert main(["train", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "Class 'cats' has no image file in" in err and "download" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", asset(HYMENOPTERA), "--unfreeze-blocks", "some"])
    assert exit_info.value.code == 2 and "argument --unfreeze-blocks" in capsys.readouterr().err


def test_predict_folders_and_globs_to_csv_and_json_reporting_every_skip(hymenoptera_result, tmp_path, capsys):
    import csv
    import shutil

    from tl_keras.cli.commands import main

    photos = tmp_path / "photos" / "nested"
    photos.mkdir(parents=True)
    src = os.path.join(asset(HYMENOPTERA), "val", "ants")
    for name in sorted(os.listdir(src))[:3]:
        shutil.copy(os.path.join(src, name), photos / name)
    (photos / "broken.jpg").write_bytes(b"not an image")
    (photos / "notes.txt").write_text("hello")
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    # broken.jpg looks like an input and fails: exit 1; notes.txt is no image: skipped, no failure.
    assert main(["predict", hymenoptera_result.export_dir, str(tmp_path / "photos"), "--top-k", "2", "--output", str(out_csv)]) == 1
    err = capsys.readouterr().err
    assert "broken.jpg: failed: " in err and "cannot be decoded as an image" in err
    assert "notes.txt: skipped: not an image file type" in err
    assert "3 images predicted, 1 failed, 1 files skipped" in err
    rows = list(csv.DictReader(open(out_csv, encoding="utf-8")))
    assert len(rows) == 5 and [r["label"] != "" for r in rows].count(True) == 3
    errors = {os.path.basename(r["path"]): r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.jpg", "notes.txt"} and "cannot be decoded" in errors["broken.jpg"]
    assert all(len(r["top_k"].split(";")) == 2 for r in rows if r["label"])
    pattern = str(tmp_path / "photos" / "**" / "*.jpg")
    assert main(["predict", hymenoptera_result.export_dir, pattern, "--output", str(out_json)]) == 1
    predicted = json.load(open(out_json))
    assert len(predicted) == 4 and sum("error" in r for r in predicted) == 1
    assert all(0 < r["probability"] <= 1 for r in predicted if "label" in r)
    # Files named one by one: every readable one is predicted, each failure reported, exit 1.
    good = sorted(str(p) for p in photos.glob("*.jpg") if p.name != "broken.jpg")
    missing = str(tmp_path / "missing.jpg")
    capsys.readouterr()
    assert main(["predict", hymenoptera_result.export_dir, good[0], missing, good[1], str(tmp_path / "*.png"), "--json"]) == 1
    out = capsys.readouterr()
    results = {r["path"]: r for r in json.loads(out.out)}
    assert "label" in results[good[0]] and "label" in results[good[1]]
    assert results[missing]["error"] == "image file or folder not found" and f"{missing}: failed" in out.err
    assert results[str(tmp_path / "*.png")]["error"] == "no file matches this pattern"
    assert main(["predict", hymenoptera_result.export_dir, str(photos / "broken.jpg")]) == 1


def test_predict_files_reports_progress_in_chunks(hymenoptera_result):
    from tl_keras.serving.client import ExportedModel

    paths = hymenoptera_result.data.val.paths[:5]
    calls = []
    results = ExportedModel(hymenoptera_result.export_dir).predict_files(paths, chunk_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)] and [r["path"] for r in results] == paths


def test_advise_prints_what_it_measured_and_why(capsys):
    from tl_keras.cli.commands import main

    args = ["advise", asset(HYMENOPTERA), "--backbone", asset(HUB_035), "--image-size", "64", "--per-class", "30"]
    assert main(args + ["--json"]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["images_per_class"] == {"ants": 124, "bees": 121} and advice["size"] == "small"
    assert list(advice["probes"]) == ["block_5", "block_11", "top"] and advice["strategy"] in ("head-only", "cut", "top-blocks")
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "linear-probe accuracy by depth: block_5" in text and "why: " in text
    assert (f"train with:  tl-keras train {asset(HYMENOPTERA)} --backbone {asset(HUB_035)} --image-size 64 "
            f"--transfer {advice['strategy']}") in text
    assert main(["advise", asset(HYMENOPTERA), "--backbone", "keras:nope"]) == 2


def test_train_strategy_auto_compare_scratch_with_learning_curves(tmp_path, capsys):
    metrics_path = tmp_path / "m.json"
    code, out = _main(capsys, "train", asset(HYMENOPTERA), "--backbone", asset(HUB_035), "--image-size", "48",
                      "--head-epochs", "2", "--fine-tune-epochs", "1", "--strategy", "auto", "--compare-scratch",
                      "--plots", str(tmp_path / "plots"), "--output", str(tmp_path / "auto"),
                      "--metrics-json", str(metrics_path), "--no-evaluate")
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    advice = metrics["advice"]
    assert metrics["transfer_strategy"] == "auto" and advice["strategy"] in ("head-only", "cut", "top-blocks")
    if advice["strategy"] == "top-blocks":  # at 48 px a middle block probes as well as the top
        assert metrics["unfrozen_blocks"] and metrics["config"]["unfreeze_blocks"] == advice["unfreeze_blocks"]
    else:
        assert (metrics["head_epochs"], metrics["fine_tune_epochs"]) == (3, 0)  # head-only plans give the head the budget
    assert f"strategy          {advice['strategy']} (advisor: small data" in out and "why: " in out
    scratch = metrics["scratch"]
    assert scratch["epochs"] == 3 and len(scratch["history"]["val_accuracy"]) == 3
    assert metrics["val_accuracy"] > scratch["val_accuracy"] + 0.1  # pretrained wins on 245 images
    assert "from scratch      val accuracy" in out
    assert os.path.getsize(tmp_path / "plots" / "scratch_vs_pretrained.png") > 10_000


def test_train_folds_reports_mean_and_spread_and_exports_nothing(tmp_path, capsys):
    metrics_path = tmp_path / "cv.json"
    code, out = _main(capsys, "train", asset(HYMENOPTERA), "--backbone", asset(HUB_035), "--image-size", "64",
                      "--head-epochs", "4", "--fine-tune-epochs", "1", "--folds", "3", "--transfer", "head-only",
                      "--metrics-json", str(metrics_path))
    assert code == 0
    cv = json.loads(metrics_path.read_text())
    print("fold accuracies", cv["accuracies"])
    assert cv["folds"] == 3 and len(cv["accuracies"]) == 3 and cv["advice"] is None  # a fixed plan: nothing measured
    assert sum(f["num_val_images"] for f in cv["per_fold"]) == 398  # all of train + val, each image validated once
    assert cv["mean_accuracy"] == pytest.approx(sum(cv["accuracies"]) / 3) and cv["std_accuracy"] > 0
    assert all(HYMENOPTERA_POOLED_MAJORITY + MARGIN < a <= 1 for a in cv["accuracies"])
    assert "val accuracy      mean" in out and "nothing exported" in out
    from tl_keras.cli.commands import main

    assert main(["train", asset(HYMENOPTERA), "--folds", "3", "--output", str(tmp_path / "x")]) == 2
    assert "--folds evaluates only" in capsys.readouterr().err


def test_lr_find_suggests_rates_for_both_phases_and_plots(tmp_path, capsys):
    found = json.loads(_main(capsys, "lr-find", asset(HYMENOPTERA), "--backbone", asset(HUB_035), "--image-size", "48",
                             "--unfreeze-blocks", "1", "--steps", "30", "--plot", str(tmp_path / "lr.png"), "--json")[1])
    rates = found["suggestions"]
    assert set(rates) == {"phase 1", "phase 2"} and 1e-7 < rates["phase 2"] < rates["phase 1"] < 1.0
    assert len(found["tests"]["phase 1"]["losses"]) <= 30
    assert os.path.getsize(tmp_path / "lr.png") > 10_000
