"""How phase 1's head starts: the ridge classifier of the cached features (the default), class
prototypes (the nearest class mean), or random weights."""

import numpy as np
import pytest
from conftest import FLOWERS, HUB_035, assert_examples_run, asset

from tl_keras.config import TrainConfig
from tl_keras.training.head_init import head_init_for, init_from_prototypes, init_from_ridge
from tl_keras.utils.ridge import fit_ridge


def test_auto_starts_from_the_ridge_classifier_where_a_plain_softmax_head_has_cached_features():
    config = TrainConfig()
    assert config.head_init == "auto"
    assert head_init_for(config, [6, 9], None, False) == ("ridge", "the default (auto)")
    assert head_init_for(config, None, None, False)[0] == "random"  # no cached features
    assert head_init_for(config, [6, 9], (64,), False) == ("random", "a ridge start does not apply: the head has hidden layers")
    assert head_init_for(config, [6, 9], None, True)[0] == "random"  # multi-label: a sigmoid per class
    assert head_init_for(config.replace(head_init="random"), [6, 9], None, False) == ("random", "set: head_init='random'")
    assert head_init_for(config.replace(head_init="prototypes"), [6, 9], None, False)[0] == "prototypes"
    for chosen in ("ridge", "prototypes"):
        with pytest.raises(ValueError, match="hidden layers"):
            head_init_for(config.replace(head_init=chosen), [6, 9], (64,), False)
        with pytest.raises(ValueError, match="caches no features"):
            head_init_for(config.replace(head_init=chosen), None, None, False)


def test_untrained_heads_started_from_prototypes_or_ridge_classify_real_photos_as_their_classifiers_do(tmp_path):
    """6 flowers photos per class: set from the prototypes or the ridge classifier, before any training,
    the head's val predictions are the nearest class mean's (computed here in numpy) or the ridge
    classifier's, far above chance (0.2)."""
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
        by_prototypes = np.asarray(head_model(model).predict(features.val, verbose=0)).argmax(1)
        measured = init_from_ridge(model, features)
        by_ridge = np.asarray(head_model(model).predict(features.val, verbose=0))
        capped = init_from_ridge(model, features, max_rows=20)
    finally:
        release(model)
    x, y, val_labels = features.train[0], np.asarray(features.train_labels), np.asarray(features.val_labels)
    means = np.stack([x[y == c].mean(0) for c in range(5)])
    nearest = ((features.val[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(by_prototypes == nearest) >= 0.95
    assert np.mean(by_prototypes == val_labels) >= 0.2 + 0.3
    ridge = fit_ridge(x, y, 5)
    assert np.mean(by_ridge.argmax(1) == ridge.predict(features.val)) >= 0.95  # the softmax keeps the ridge's order
    assert np.mean(by_ridge.argmax(1) == val_labels) >= 0.2 + 0.3
    assert measured["penalty"] == ridge.penalty and measured["loo_accuracy"] == pytest.approx(ridge.loo_accuracy, abs=1e-4)
    assert measured["rows"] == 30 and capped["rows"] == 20
    assert by_ridge.max(1).mean() > 1.5 / 5  # the temperature makes it a confident softmax, not a near-uniform one


def test_train_says_how_the_head_started(tiny_hub, tmp_path):
    from conftest import hymenoptera_subset

    import tl_keras

    labels = hymenoptera_subset(tmp_path / "labels.csv", train=8, val=8)
    kwargs = dict(backbone=tiny_hub, image_size=32, head_epochs=2, fine_tune_epochs=0, export=False, evaluate=False,
                  checkpoint_dir=None, verbose=0)
    result = tl_keras.train(labels, **kwargs)
    start = result.metrics["head_init"]
    assert (start["chosen"], start["reason"], start["rows"]) == ("ridge", "the default (auto)", 16)
    assert 0.0 <= start["loo_accuracy"] <= 1.0 and start["penalty"] > 0 and start["temperature"] > 0
    assert result.metrics["config"]["head_init"] == "ridge"
    result = tl_keras.train(labels, head_init="prototypes", **kwargs)
    assert result.metrics["head_init"] == {"chosen": "prototypes", "reason": "set: head_init='prototypes'"}


def test_the_module_examples_run():
    import tl_keras.training.head_init

    assert_examples_run(tl_keras.training.head_init, 2)
