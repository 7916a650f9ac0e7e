"""The strategy advisor: its probe, its decision table, and a real measurement on the ants/bees photos."""

import numpy as np
import pytest
from conftest import HYMENOPTERA, KERAS_035, asset

from tl_keras.tuning.advisor import (
    LARGE_PER_CLASS,
    MIN_TOP_KAPPA,
    SMALL_PER_CLASS,
    TOLERANCE,
    advise,
    choose_strategy,
    probe_depths,
    ridge_probe,
)


def test_ridge_probe_separates_separable_features_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    signal = np.eye(3)[labels] @ rng.normal(size=(3, 64)) * 3 + rng.normal(size=(120, 64))
    noise = rng.normal(size=(120, 64))
    train, test = np.arange(120) % 2 == 0, np.arange(120) % 2 == 1
    assert ridge_probe(signal[train], labels[train], signal[test], labels[test], 3) > 0.95
    assert ridge_probe(noise[train], labels[train], noise[test], labels[test], 3) < 0.6


@pytest.mark.parametrize("per_class, probes, similar, expected", [
    (100, {"block_5": 0.70, "block_11": 0.80, "top": 0.90}, True, ("head-only", None, 0)),
    (100, {"block_5": 0.85, "block_11": 0.75, "top": 0.70}, False, ("cut", "block_5", 0)),
    (100, {"block_5": 0.55, "block_11": 0.56, "top": 0.60}, False, ("head-only", None, 0)),  # weak everywhere: nothing to cut to
    # The depth profile: a middle block probing as well as the top (aerial scenes, MobileNetV2 at 160 px)
    # means the top is specific to ImageNet's task: fine-tune it, kept only if it beats the head.
    (100, {"block_5": 0.70, "block_11": 0.844, "top": 0.841}, False, ("top-blocks", None, 5)),
    (100, {"block_5": 0.70, "block_11": 0.87, "top": 0.90}, False, ("top-blocks", None, 5)),  # within 0.03
    (SMALL_PER_CLASS, {"block_5": 0.70, "block_11": 0.80, "top": 0.90}, True, ("top-blocks", None, 5)),
    (SMALL_PER_CLASS, {"block_5": 0.85, "block_11": 0.75, "top": 0.70}, False, ("top-blocks", None, 10)),
    (LARGE_PER_CLASS, {"block_5": 0.70, "block_11": 0.80, "top": 0.90}, True, ("fine-tune-all", None, "all")),
])
def test_size_by_similarity_table(per_class, probes, similar, expected):
    advice = choose_strategy({"a": per_class, "b": per_class + 7}, probes, 2, default_blocks=5, num_blocks=17)
    assert (advice.strategy, advice.cut, advice.unfreeze_blocks) == expected
    assert advice.similar is similar
    if expected[0] == "fine-tune-all":
        assert advice.layer_decay == 0.8 and advice.hidden_units == (512,)
    assert str(min(per_class, per_class + 7)) in advice.reason


def test_probe_depths_are_a_third_and_two_thirds_up():
    assert probe_depths(["stem"] + [f"block_{i}" for i in range(1, 17)]) == ["block_5", "block_11"]


def test_a_module_that_cannot_be_cut_is_probed_at_the_top_only(tiny_hub, monkeypatch):
    import tl_keras.models.backbones.hub

    # A module with neither Keras layer functions nor block names in its ops: nothing to cut at.
    monkeypatch.setattr(tl_keras.models.backbones.hub, "cut_points", lambda flat, patterns=(): {})
    advice = advise(asset(HYMENOPTERA), backbone=tiny_hub, image_size=32, per_class=10)
    assert list(advice.probes) == ["top"] and advice.strategy == "head-only"
    assert "Only the top features were probed" in advice.reason and "neither per-layer functions nor op names" in advice.reason


def test_advise_measures_the_real_photos_and_its_options_build_a_model():
    advice = advise(asset(HYMENOPTERA), backbone="keras:mobilenet_v2", weights=asset(KERAS_035), image_size=64, per_class=20)
    assert advice.images_per_class == {"ants": 124, "bees": 121} and advice.size == "small"
    assert list(advice.probes) == ["block_5", "block_11", "top"]
    assert all(0.5 < acc <= 1.0 for acc in advice.probes.values())  # ants vs bees: above chance at every depth
    assert advice.strategy in ("head-only", "cut", "top-blocks") and "smallest class 121" in advice.reason
    # The depth profile decides: similar only if the top probes clearly better than every block below.
    middle = max(acc for depth, acc in advice.probes.items() if depth != "top")
    assert advice.similar == (advice.probes["top"] > middle + TOLERANCE and advice.similarity >= MIN_TOP_KAPPA)
    assert advice.strategy == choose_strategy(advice.images_per_class, advice.probes, 2, 3, 17).strategy
    text = advice.describe()
    assert "linear-probe accuracy by depth" in text and advice.strategy in text
