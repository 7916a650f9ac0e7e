"""A head that starts from class prototypes: the nearest-class-mean classifier of the cached features."""

import numpy as np
import pytest
from conftest import FLOWERS, HUB_035, asset

from tl_keras.config import TrainConfig
from tl_keras.training.prototypes import FEW_SHOT_PER_CLASS, head_init_for, init_from_prototypes


def test_auto_starts_from_prototypes_only_for_small_classes_of_a_plain_softmax_head():
    config = TrainConfig(head_init="auto")
    assert TrainConfig().head_init == "random"  # the default: prototypes did not pay on the few-shot benchmark
    assert head_init_for(config, [6, 9], None, False)[0] == "prototypes"
    assert head_init_for(config, [FEW_SHOT_PER_CLASS, 500], None, False)[0] == "random"
    assert head_init_for(config, None, None, False) == ("random", "phase 1 caches no features to compute the prototypes from")
    assert head_init_for(config, [6, 9], (64,), False)[0] == "random"
    assert head_init_for(config.replace(head_init="random"), [6, 9], None, False)[0] == "random"
    with pytest.raises(ValueError, match="hidden layers"):
        head_init_for(config.replace(head_init="prototypes"), [6, 9], (64,), False)
    with pytest.raises(ValueError, match="caches none"):
        head_init_for(config.replace(head_init="prototypes"), None, None, False)


def test_the_untrained_prototype_head_classifies_real_photos_as_the_class_means_do(tmp_path):
    """6 flowers photos per class: set from the prototypes, before any training, the head's val
    predictions are the nearest class mean's (computed here in numpy), far above chance (0.2)."""
    import os

    from tl_keras.models.preamble import build_model, load_folder, release, resolve_spec
    from tl_keras.training.caches import compute_features, head_model

    rows = ["path,label,split"]
    for split, n in (("train", 6), ("val", 20)):
        for cls in sorted(os.listdir(os.path.join(asset(FLOWERS), split))):
            folder = os.path.join(FLOWERS, split, cls)
            rows += [f"{os.path.join(folder, f)},{cls},{split}" for f in sorted(os.listdir(folder))[:n]]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data, config = str(tmp_path / "labels.csv"), TrainConfig(backbone=asset(HUB_035), image_size=96)
    spec = resolve_spec(data, config)
    folder = load_folder(data, config, spec)
    model = build_model(spec, folder, config)
    try:
        features = compute_features(model, folder, batch_size=64)
        init_from_prototypes(model, features)
        predicted = np.asarray(head_model(model).predict(features.val, verbose=0)).argmax(1)
    finally:
        release(model)
    x, y = features.train[0], np.asarray(features.train_labels)
    means = np.stack([x[y == c].mean(0) for c in range(5)])
    nearest = ((features.val[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(predicted == nearest) >= 0.95
    assert np.mean(predicted == np.asarray(features.val_labels)) >= 0.2 + 0.3


def test_train_says_how_the_head_started(tiny_hub, tmp_path):
    from conftest import hymenoptera_subset

    import tl_keras

    labels = hymenoptera_subset(tmp_path / "labels.csv", train=8, val=8)
    result = tl_keras.train(labels, backbone=tiny_hub, image_size=32, head_epochs=2, fine_tune_epochs=0, export=False,
                            evaluate=False, checkpoint_dir=None, verbose=0, head_init="auto")
    assert result.metrics["head_init"] == {"chosen": "prototypes", "reason": "the smallest class has 8 training images (< 20)"}
    assert result.metrics["config"]["head_init"] == "prototypes"
