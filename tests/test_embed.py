"""Feature extraction mode: one vector per image, with path and label, from an export or a backbone."""

import os
import shutil

import numpy as np
from conftest import HUB_035, HYMENOPTERA, asset


def test_embed_an_export_writes_the_fine_tuned_backbone_features(hymenoptera_result, tmp_path):
    from tl_keras.cli.commands import main
    from tl_keras.training.caches import extract_features, feature_extractor

    out = tmp_path / "features.npz"
    assert main(["embed", hymenoptera_result.export_dir, asset(HYMENOPTERA), "--output", str(out)]) == 0
    with np.load(out) as data:  # no pickle needed
        assert sorted(data.files) == ["class_names", "features", "labels", "paths", "splits"]
        features, paths, labels, splits = data["features"], data["paths"], data["labels"], data["splits"]
        assert data["class_names"].tolist() == ["ants", "bees"]
    folder = hymenoptera_result.data
    assert features.shape == (len(folder.train) + len(folder.val), 1280)
    assert paths.tolist() == folder.train.paths + folder.val.paths
    assert labels.tolist() == folder.train.labels.tolist() + folder.val.labels.tolist()
    assert set(splits.tolist()) == {"train", "val"}
    # The export's features are the trained model's own backbone output.
    expected = extract_features(feature_extractor(hymenoptera_result.model), folder.dataset("val", batch_size=64))
    np.testing.assert_allclose(features[len(folder.train):], expected, atol=1e-4)


def test_embed_a_hub_backbone_and_report_skips(tmp_path):
    from tl_keras.serving.embed import embed

    for cls in ("ants", "bees"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        src = os.path.join(asset(HYMENOPTERA), "val", cls)
        for name in sorted(os.listdir(src))[:3]:
            shutil.copy(os.path.join(src, name), tmp_path / "data" / cls / name)
    (tmp_path / "data" / "bees" / "broken.jpg").write_bytes(b"not an image")
    result = embed(asset(HUB_035), str(tmp_path / "data"), image_size=64)
    assert result["features"].shape == (6, 1280) and set(result["splits"].tolist()) == {"all"}
    assert [s["path"].endswith("broken.jpg") for s in result["skipped_files"]] == [True]
