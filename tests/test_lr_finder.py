"""The learning-rate range test: its rule, its ramp, and both phases on the real ants/bees photos."""

import numpy as np
import pytest
from conftest import HUB_035, HYMENOPTERA, asset

from tl_keras.data.folder import load_image_folder
from tl_keras.models.classifier import build_classifier
from tl_keras.training.caches import compute_features
from tl_keras.tuning.lr_finder import find_learning_rates, steepest, suggest


def test_suggestion_is_a_tenth_of_the_edge_past_the_minimum_and_steepest_is_before_it():
    rates = list(np.logspace(-6, 0, 61))
    x = np.log10(rates)
    loss = 1.0 - 0.8 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -1, 5 * (x + 1) ** 2, 0)  # falls around 1e-3, minimum near 1e-1
    edge = max(i for i in range(int(np.argmin(loss)), 61) if loss[i] <= loss.min() * 1.2)
    assert 0.05 < rates[edge] < 0.2 and suggest(rates, list(loss)) == pytest.approx(rates[edge] / 10)
    assert 3e-4 < steepest(rates, list(loss)) < 3e-3
    # Flat, noisy, then diverging (fine-tuning an already trained head): the minimum is noise at the
    # start, and the suggestion still sits a decade below where the loss takes off (1e-2).
    flat = 0.5 + 0.02 * np.sin(7 * x) + np.where(x > -2, 3 * (x + 2) ** 2, 0)
    flat[2] = 0.3  # one easy batch early in the ramp is not the minimum
    assert 5e-4 < suggest(rates, list(flat)) < 2e-3


@pytest.fixture(scope="module")
def small():
    folder = load_image_folder(asset(HYMENOPTERA), image_size=48)
    model = build_classifier(asset(HUB_035), 2, image_size=48, class_names=folder.class_names)
    return folder, model, compute_features(model, folder, batch_size=32)


def test_both_phases_ramp_diverge_at_high_rates_and_leave_the_model_unchanged(small):
    folder, model, features = small
    before = [w.numpy().copy() for w in model.weights]
    found = find_learning_rates(model, folder.dataset("train", batch_size=32, training=True), features=features,
                                unfreeze_blocks=1, steps=40, max_lr=10.0, head_epochs=1)
    assert list(found.tests) == ["phase 1", "phase 2"]
    for test in found.tests.values():
        assert test.learning_rates == sorted(test.learning_rates) and test.learning_rates[0] == pytest.approx(1e-7)
        assert test.smoothed[-1] > 1.2 * min(test.smoothed)  # rates towards 10 break training
        assert test.stopped_early == (len(test.losses) < 40)
        assert test.learning_rates[0] / 10 <= test.suggestion < test.learning_rates[-1]
    assert found.suggestions["phase 2"] < found.suggestions["phase 1"]  # fine-tuning wants a smaller rate
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(model.weights, before))
    assert model.backbone.trainable_weights == []


def test_the_phase_one_suggestion_learns_faster_than_a_tiny_rate(small):
    from tl_keras.training.caches import head_model
    from tl_keras.training.compile import compile_for_phase

    folder, model, features = small
    found = find_learning_rates(model, folder.dataset("train", batch_size=32), features=features, phases=(1,), steps=40)
    train, _ = features.datasets()
    losses = {}
    for name, rate in (("suggested", found.suggestions["phase 1"]), ("tiny", 1e-6)):
        saved = [w.numpy() for w in model.weights]
        head = head_model(model)
        compile_for_phase(head, rate)
        losses[name] = head.fit(train, epochs=3, verbose=0).history["loss"][-1]  # training loss: how fast it learns
        for w, v in zip(model.weights, saved):
            w.assign(v)
    assert losses["suggested"] < losses["tiny"] - 0.05, losses


def test_lr_find_builds_the_model_train_builds(tmp_path, monkeypatch):
    """lr_find runs the preamble train runs: on multi-label data the range test sees a sigmoid head,
    with the config's l2 and feature normalisation, under the distribution's scope."""
    from conftest import hymenoptera_subset

    import tl_keras
    from tl_keras.tuning import lr_finder

    path = hymenoptera_subset(tmp_path / "labels.csv", train=6, val=3)
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",ants,", ",ants;bees,")  # one image with both labels: multi-label data
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    seen = {}

    def spy(model, train_ds, **options):
        seen.update(model=model, options=options)
        return "found"

    monkeypatch.setattr(lr_finder, "find_learning_rates", spy)
    assert tl_keras.lr_find(path, backbone=asset(HUB_035), image_size=32, l2=1e-3, normalize_features=True,
                            distribute="mirrored") == "found"
    model = seen["model"]
    assert model.multi_label and model.get_layer("predictions").activation.__name__ == "sigmoid"
    assert model.l2 == 1e-3 and model.normalize_features
    assert "Mirrored" in type(model.distribute_strategy).__name__
