import os

import pytest

from conftest import HYMENOPTERA, asset
from tl_keras.serving import ExportedModel


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
    with pytest.raises(ValueError, match="Image file not found"):
        model.predict_files(["/no/such.jpg"])


def test_evaluate_on_the_val_folder(hymenoptera_result):
    report = ExportedModel(hymenoptera_result.export_dir).evaluate(asset(HYMENOPTERA), image_size=96)
    assert report["split"] == "val" and report["num_images"] == 153
    assert report["accuracy"] == pytest.approx(hymenoptera_result.metrics["val_accuracy"], abs=0.02)
    assert sum(row["support"] for row in report["per_class"].values()) == 153
