"""Duplicates, label conflicts and train/val leaks, found by content on real photos, and what
--on-leak / --on-conflict do with them: report (the default), drop, or stop with an error."""

import json
import os
import shutil

import pytest
from conftest import HYMENOPTERA, asset, shown_images

from tl_keras.data.check import apply_policies, check_data
from tl_keras.data.folder import load_image_folder


@pytest.fixture
def planted(tmp_path):
    """Real ants/bees photos in train/ and val/, with a train photo copied into val/ (a leak), the same
    photo under ants/ and bees/ (a conflict), one photo twice in one class (a duplicate), and a train
    photo re-saved smaller at JPEG quality 75 into val/ (a near-duplicate: other bytes)."""
    root = tmp_path / "data"
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            source = os.path.join(asset(HYMENOPTERA), split, cls)
            for name in sorted(n for n in os.listdir(source) if n.endswith(".jpg"))[:n]:
                shutil.copy(os.path.join(source, name), root / split / cls / name)
    first = sorted((root / "train" / "ants").iterdir())
    shutil.copy(first[0], root / "val" / "ants" / "leaked_copy.jpg")
    shutil.copy(first[1], root / "train" / "bees" / "also_a_bee.jpg")
    shutil.copy(first[2], root / "train" / "ants" / "twice.jpg")
    from PIL import Image

    with Image.open(first[3]) as photo:
        photo.resize((photo.width * 6 // 10, photo.height * 6 // 10)).save(root / "val" / "ants" / "resaved.jpg", quality=75)
    return root, first


def test_each_kind_is_found_by_content_whatever_the_name(planted):
    root, first = planted
    folder = load_image_folder(str(root), image_size=32)
    checked = check_data(folder)
    assert [sorted(os.path.basename(p) for p in g["paths"]) for g in checked.leaks] == [sorted([first[0].name, "leaked_copy.jpg"])]
    assert checked.leaks[0]["splits"] == ["train", "val"]
    assert [g["classes"] for g in checked.conflicts] == [["ants", "bees"]]
    assert [sorted(os.path.basename(p) for p in g["paths"]) for g in checked.duplicates] == [sorted([first[2].name, "twice.jpg"])]
    assert checked.class_counts["train"] == {"ants": 7, "bees": 7} and checked.small_classes == ["ants", "bees"]
    assert checked.near_duplicates is None  # check_data compares bytes; checked_folder adds the near-duplicates
    assert checked.imbalance == 1.0
    assert len(check_data(load_image_folder(asset(HYMENOPTERA), image_size=32)).leaks) == 0  # the real set is clean


def test_a_resaved_copy_across_splits_is_a_near_duplicate_and_an_exact_copy_is_not_reported_twice(planted):
    from tl_keras.data.check import checked_folder

    root, first = planted
    folder, checked = checked_folder(load_image_folder(str(root), image_size=32))
    assert [[os.path.basename(p) for p in g["paths"]] for g in checked.near_duplicates] == [["resaved.jpg", first[3].name]]
    assert checked.near_duplicates[0]["splits"] == ["val", "train"] and checked.near_duplicates[0]["distance"] <= 8
    assert "near-duplicate (val, train" in "\n".join(checked.lines())
    _, off = checked_folder(folder, near_duplicates=False)
    assert off.near_duplicates is None and "near_duplicate_check=False" in off.near_duplicate_check


def test_without_imagehash_the_check_names_the_extra(planted, monkeypatch):
    import sys

    from tl_keras.data.check import checked_folder

    monkeypatch.setitem(sys.modules, "imagehash", None)
    _, checked = checked_folder(load_image_folder(str(planted[0]), image_size=32))
    assert checked.near_duplicates is None and "tl_keras[dedup]" in checked.near_duplicate_check
    assert any("tl_keras[dedup]" in line for line in checked.lines()) and len(checked.leaks) == 1


def test_train_finds_the_two_near_duplicate_pairs_in_flowers_and_nothing_else(flowers_result):
    """flowers holds two photos in val whose re-toned copies are in train (a sunflower against the sky,
    tulips in a vase by a window: looked at); no other pair comes within the threshold."""
    found = flowers_result.metrics["data_check"]["near_duplicates"]
    assert [[os.path.basename(p) for p in f["paths"]] for f in found] == [
        ["2344751399_71620039f2_n.jpg", "2333321040_3960b9d67e_n.jpg"], ["14925398441_107f3e0304_n.jpg", "14741866338_bdc8bfc8d5_n.jpg"]]


def test_drop_removes_a_leaks_train_copy_and_every_copy_of_a_conflict_and_says_so(planted):
    root, first = planted
    folder = load_image_folder(str(root), image_size=32)
    checked = check_data(folder)
    dropped = apply_policies(folder, checked, on_leak="drop", on_conflict="drop")
    gone = {os.path.basename(p): reason for p, reason in checked.dropped}
    assert set(gone) == {first[0].name, first[1].name, "also_a_bee.jpg"}
    assert "dropped from train" in gone[first[0].name] and "labelled ants and bees" in gone["also_a_bee.jpg"]
    assert str(root / "val" / "ants" / "leaked_copy.jpg") in dropped.val.paths  # val stays as it was
    assert len(dropped.train) == len(folder.train) - 3 and len(dropped.train.images) == len(dropped.train)
    assert dropped.num_used + len(dropped.skipped) == dropped.num_found  # nothing lost silently
    assert apply_policies(folder, check_data(folder)) is folder  # warn: reported, nothing changed
    with pytest.raises(ValueError, match="1 leak in .*--on-leak drop"):
        apply_policies(folder, check_data(folder), on_leak="error")
    with pytest.raises(ValueError, match="on_leak"):
        apply_policies(folder, check_data(folder), on_leak="ignore")


def test_train_reports_the_check_and_the_check_command_prints_it(planted, tiny_hub, tmp_path, capsys):
    import tl_keras
    from tl_keras.cli import main

    root, first = planted
    result = tl_keras.train(str(root), backbone=tiny_hub, image_size=32, head_epochs=1, fine_tune_epochs=0, export=False,
                            evaluate=False, checkpoint_dir=None, verbose=0, on_leak="drop", report=str(tmp_path / "data.html"),
                            label_check=False)
    page = (tmp_path / "data.html").read_text()  # the HTML view of metrics["data_check"] (a browser opens it below)
    assert page.count("class='group conflicts'") == 1 and page.count("<img") == 8  # 4 groups of 2 copies
    assert "dropped" in page and "on_leak=drop" in page
    report = result.metrics["data_check"]
    assert report["label_issues"] is None and report["label_check"] == "label issues not checked: label_check=False"
    assert len(report["leaks"]) == 1 and len(report["conflicts"]) == 1 and len(report["dropped"]) == 1
    assert result.metrics["num_train_images"] == 14 - 1
    assert main(["check", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["leaks"]) == 1 and len(out["conflicts"]) == 1 and len(out["duplicates"]) == 1 and out["dropped"] == []
    assert main(["check", str(root), "--on-conflict", "error"]) == 2
    assert "label conflict" in capsys.readouterr().err


def test_images_read_from_tf_data_are_compared_by_their_pixels():
    """tf.data elements are no files: a val element with the pixels of a train element is a leak."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from tl_keras.data.tfdata import DatasetSource, load_datasets

    photos = []
    for cls in ("ants", "bees"):
        folder = os.path.join(asset(HYMENOPTERA), "train", cls)
        for name in sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))[:5]:
            photos.append(np.asarray(Image.open(os.path.join(folder, name)).convert("RGB").resize((48, 48))))
    ants, bees = photos[:5], photos[5:]
    train = tf.data.Dataset.from_tensor_slices((np.stack(ants[:4] + bees[:4]), [0] * 4 + [1] * 4))
    val = tf.data.Dataset.from_tensor_slices((np.stack([ants[0], bees[4]]), [0, 1]))  # ants[0] is a train image too
    folder = load_datasets(DatasetSource(train, val, ("ants", "bees")), image_size=32)
    checked = check_data(folder)
    assert [g["splits"] for g in checked.leaks] == [["train", "val"]] and len(checked.leaks[0]["paths"]) == 2
    assert checked.conflicts == [] and checked.duplicates == []


def test_the_html_report_shows_each_kind_side_by_side_in_a_browser(planted, tmp_path, browser, capsys):
    """`tl-keras check DATA --report FILE.html` on the planted copies, opened in headless Chromium:
    each group's copies are shown as decoded thumbnails side by side, named by their paths, and a
    skipped file is listed with its reason. The page stands alone (no file beside it)."""
    from selenium.webdriver.common.by import By

    from tl_keras.cli import main

    root, first = planted
    (root / "train" / "bees" / "notes.jpg").write_text("not a photo")
    report = tmp_path / "out" / "check.html"
    assert main(["check", str(root), "--report", str(report), "--quiet"]) == 0
    assert f"report: {report}" in capsys.readouterr().out
    assert os.listdir(report.parent) == ["check.html"]
    browser.get(report.as_uri())
    images = shown_images(browser)
    assert len(images) == 8 and all(i["ok"] for i in images), images  # 4 groups of 2 copies, every thumbnail decoded
    for kind, copies in (("conflicts", {first[1].name, "also_a_bee.jpg"}), ("leaks", {first[0].name, "leaked_copy.jpg"}),
                         ("duplicates", {first[2].name, "twice.jpg"}), ("near-duplicates", {"resaved.jpg", first[3].name})):
        groups = browser.find_elements(By.CSS_SELECTOR, f"div.group.{kind}")
        assert len(groups) == 1, kind
        captions = [c.text for c in groups[0].find_elements(By.TAG_NAME, "figcaption")]
        assert {os.path.basename(c) for c in captions} == copies, (kind, captions)
    assert "classes ants, bees" in browser.find_element(By.CSS_SELECTOR, "div.group.conflicts").text
    assert "splits train, val" in browser.find_element(By.CSS_SELECTOR, "div.group.leaks").text
    skipped = browser.find_elements(By.CSS_SELECTOR, "tr.skipped")
    assert len(skipped) == 1 and "notes.jpg" in skipped[0].text and "not" in skipped[0].text.split("notes.jpg")[1]
    assert "not checked" in browser.find_element(By.ID, "label-issues").find_element(By.XPATH, "following-sibling::p").text
