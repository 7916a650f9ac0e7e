"""Label files: the real ants/bees photos listed in a CSV file, a DataFrame and a list of rows."""

import csv
import json
import os

import numpy as np
import pytest
from conftest import HYMENOPTERA, asset

from tl_keras.data.folder import load_image_folder
from tl_keras.data.label_files import load_label_file
from tl_keras.data.sources import count_images


def _rows(root):
    """(path relative to `root`, label, split) for every file of the hymenoptera folders."""
    rows = []
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            folder = os.path.join(asset(HYMENOPTERA), split, label)
            for name in sorted(os.listdir(folder)):
                rows.append((os.path.relpath(os.path.join(folder, name), root), label, split))
    return rows


@pytest.fixture
def label_csv(tmp_path):
    """labels.csv listing every hymenoptera file (paths relative to the CSV), plus a row whose file
    is missing and a row naming a text file."""
    (tmp_path / "notes.txt").write_text("not a photo")
    rows = _rows(str(tmp_path)) + [("gone/ant.jpg", "ants", "train"), ("notes.txt", "bees", "train")]
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return str(path), rows


def test_a_csv_gives_the_folders_images_and_reports_every_row(label_csv):
    path, rows = label_csv
    listed = load_label_file(path, image_size=32)
    folder = load_image_folder(asset(HYMENOPTERA), image_size=32)
    assert listed.class_names == folder.class_names == ["ants", "bees"]
    assert listed.num_found == len(rows) and listed.num_used + len(listed.skipped) == len(rows)  # nothing lost
    reasons = {os.path.basename(p): r for p, r in listed.skipped}
    assert "listed in" in reasons["ant.jpg"] and "not found" in reasons["ant.jpg"]
    assert reasons["notes.txt"].startswith("not an image file type")
    assert listed.validation_source == "folder"
    # What the advisor counts (listing only): training rows per class, the two odd rows included.
    assert count_images(path) == {"ants": 124 + 1, "bees": 121 + 1} and count_images(asset(HYMENOPTERA)) == {"ants": 124, "bees": 121}
    for split in ("train", "val"):  # the same files, labels and decoded pixels as the folder
        assert [os.path.realpath(p) for p in listed.splits[split].paths] == [os.path.realpath(p) for p in folder.splits[split].paths]
        np.testing.assert_array_equal(listed.splits[split].labels, folder.splits[split].labels)
        np.testing.assert_array_equal(listed.splits[split].images, folder.splits[split].images)


def test_a_dataframe_and_a_list_of_rows_read_as_the_csv(label_csv, tmp_path, monkeypatch):
    import pandas as pd

    path, rows = label_csv
    monkeypatch.chdir(tmp_path)  # relative paths start from the current folder for in-memory rows
    from_csv = load_label_file(path, image_size=32)
    frame = pd.DataFrame(rows, columns=["path", "label", "split"])
    for source in (frame, rows):
        loaded = load_label_file(source, image_size=32)
        assert loaded.class_names == from_csv.class_names
        assert loaded.train.paths == from_csv.train.paths and loaded.val.paths == from_csv.val.paths
        np.testing.assert_array_equal(loaded.train.labels, from_csv.train.labels)
        assert [p for p, _ in loaded.skipped] == [p for p, _ in from_csv.skipped]
    train_rows = [r[:2] for r in rows if r[2] == "train"]  # (path, label): no split column
    loaded = load_label_file(train_rows, image_size=32, validation_split=0.2)
    assert loaded.validation_source == "split" and loaded.num_found == len(train_rows)
    assert len(loaded.val) == pytest.approx(0.2 * (loaded.num_used), abs=2)  # a seeded, stratified share


@pytest.mark.parametrize("content, message", [
    ("file,label\na.jpg,ants\n", r"must have the columns path,label\[,split\] \(or path and one 0/1 column per class\); path missing"),
    ("path,label\na.jpg,\n", r"line 2 has an empty label"),
    ("path,label,split\na.jpg,ants,holdout\n", r"line 2 has split 'holdout': use train, val or test"),
    ("path,label\na.jpg,ants\nb.jpg,ants\n", r"must list at least 2 classes. Received: 1 \(ants\)"),
    ("path,label,split\na.jpg,ants,train\nb.jpg,bees,val\n", r"Class 'bees' has no training row"),
    ("path,label\n", r"lists no image"),
    ("path,ants,bees\na.jpg,1,yes\n", r"line 2: the class columns must hold 0 or 1; bees='yes'"),
])
def test_bad_label_files_are_errors_naming_the_file_line_and_fix(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_label_file(str(path), image_size=32)


def test_multi_label_rows_as_a_b_labels_or_0_1_columns(tmp_path):
    """`a;b` gives an image several labels and makes the file multi-label; one 0/1 column per class
    says the same (a row of zeros: none of the classes). Labels are 0/1 flags per class."""
    from tl_keras.data.label_files import count_rows

    ants = os.path.join(asset(HYMENOPTERA), "train", "ants")
    photos = [os.path.join(ants, name) for name in sorted(os.listdir(ants)) if name.endswith(".jpg")][:6]
    text = tmp_path / "labels.csv"
    text.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in zip(
        photos, ["ants", "bees;ants", "bees", "ants ; bees ;ants", "bees", "ants"])))
    columns = tmp_path / "columns.csv"
    columns.write_text("path,ants,bees\n" + "".join(f"{p},{a},{b}\n" for p, (a, b) in zip(
        photos, [(1, 0), (1, 1), (0, 1), (1, 1), (0, 1), (0, 0)])))
    for path, last in ((text, [1, 0]), (columns, [0, 0])):
        folder = load_label_file(str(path), image_size=32, validation_split=0.3)
        assert folder.multi_label and folder.class_names == ["ants", "bees"]
        flags = {s.path: list(s.label) for split in folder.splits.values() for s in split.samples}
        assert [flags[p] for p in photos] == [[1, 0], [1, 1], [0, 1], [1, 1], [0, 1], last]
        assert folder.train.labels.dtype == np.float32 and folder.train.labels.shape[1] == 2
    assert count_rows(str(text)) == {"ants": 4, "bees": 4}  # a row counts for each of its classes
    with pytest.raises(ValueError, match="multi-label"):
        folder.folds(2)


def test_train_and_evaluate_from_a_label_file(label_csv, tiny_hub, tmp_path, capsys):
    from tl_keras.cli.commands import main

    path, rows = label_csv
    metrics_path = tmp_path / "m.json"
    assert main(["train", path, "--backbone", tiny_hub, "--image-size", "32", "--head-epochs", "3",
                 "--fine-tune-epochs", "0", "--output", str(tmp_path / "out"), "--metrics-json", str(metrics_path)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())
    assert metrics["num_files_found"] == len(rows) and "gone" in out  # the summary names the missing row's file
    assert metrics["num_train_images"] + metrics["num_val_images"] + len(metrics["skipped_files"]) == len(rows)
    assert main(["evaluate", metrics["export_dir"], path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 153 and report["accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-6)
    assert main(["train", str(tmp_path / "nope.csv"), "--backbone", tiny_hub]) == 2
    assert "Label file not found" in capsys.readouterr().err


def _kaggle_labels(tmp_path, present: int = 12, missing: int = 30) -> str:
    """Kaggle's layout: labels.csv with `id,breed`, images at train/<id>.jpg; the file lists more rows
    than images present (as the dog-breed set's 10,222 rows for 1,000 images)."""
    import shutil

    (tmp_path / "train").mkdir()
    rows = ["id,breed"]
    for label in ("ants", "bees"):
        folder = os.path.join(asset(HYMENOPTERA), "train", label)
        for i, name in enumerate(sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))[:present]):
            shutil.copy(os.path.join(folder, name), tmp_path / "train" / f"{label}{i:03d}.jpg")
            rows.append(f"{label}{i:03d},{label}_breed")
    rows += [f"gone{i:04d},ants_breed" for i in range(missing)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return str(tmp_path / "labels.csv")


def test_a_kaggle_label_file_reads_through_its_columns(tmp_path, tiny_hub, capsys):
    import tl_keras
    from tl_keras.cli import main
    from tl_keras.data.label_files import LabelFile

    path = _kaggle_labels(tmp_path)
    folder = load_label_file(LabelFile(path, path_column="id", label_column="breed", path_format="train/{}.jpg"), image_size=32)
    assert folder.class_names == ["ants_breed", "bees_breed"] and folder.num_used == 24
    assert len(folder.skipped) == 30 and folder.num_used + len(folder.skipped) == folder.num_found
    result = tl_keras.train(path, backbone=tiny_hub, image_size=32, head_epochs=1, fine_tune_epochs=0, export=False,
                            evaluate=False, checkpoint_dir=None, verbose=0,
                            path_column="id", label_column="breed", path_format="train/{}.jpg")
    assert result.metrics["num_train_images"] + result.metrics["num_val_images"] == 24
    assert result.config.path_column == "id" and result.metrics["config"]["path_format"] == "train/{}.jpg"
    # The CLI: the same flags; the 30 missing rows are one line with the count and the first few.
    assert main(["train", path, "--backbone", tiny_hub, "--image-size", "32", "--head-epochs", "1", "--fine-tune-epochs", "0",
                 "--path-column", "id", "--label-column", "breed", "--path-format", "train/{}.jpg",
                 "--output", str(tmp_path / "model"), "--no-evaluate"]) == 0
    out = capsys.readouterr().out
    assert out.count("listed in") == 1 and "skipped 30 files: listed in" in out and "gone0000" in out and "gone0005" not in out


def test_a_wrong_column_fails_in_the_cli_before_tensorflow_is_imported(tmp_path):
    """train, check, advise and lr-find read a label file through the same column flags, checked by
    listing: a wrong column fails with the fix before TensorFlow is imported."""
    import subprocess
    import sys

    path = _kaggle_labels(tmp_path, present=2, missing=0)
    code = ("import sys\nfrom tl_keras.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print(rc, 'tensorflow' in sys.modules)\n")
    cases = [("train", [], "path missing (found: id, breed)"),
             ("train", ["--path-column", "id", "--label-column", "dog"], "no column label_column='dog'"),
             ("train", ["--path-column", "id", "--label-column", "breed", "--path-format", "train/x.jpg"], "must hold `{}` once")]
    cases += [(command, ["--path-column", "id", "--label-column", "dog"], "no column label_column='dog'")
              for command in ("check", "advise", "lr-find")]
    for command, flags, message in cases:
        done = subprocess.run([sys.executable, "-c", code, command, path, *flags], capture_output=True, text=True, timeout=120)
        assert done.stdout.split()[-2:] == ["2", "False"], (command, flags, done.stdout, done.stderr[-2000:])
        assert message in done.stderr, (command, flags, done.stderr[-2000:])
