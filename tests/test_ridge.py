"""The ridge classifier: its closed-form leave-one-out scores are the refits without each row."""

import numpy as np
import pytest
from conftest import assert_examples_run

from tl_keras.utils.ridge import fit_ridge, softmax_temperature


def _refit_without(features, labels, num_classes, penalty, row, w):
    """The weighted ridge fit of every row but `row`, at one penalty, solved directly (the primal
    normal equations `(A' W A + penalty I) x = A' W T`), with the standardisation and penalty scale of
    the full set, scoring the left-out row."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    a = (features - mean) / std
    w = w / w.mean()
    scale = (w[:, None] * a**2).sum() / len(a)
    keep = np.arange(len(a)) != row
    targets = np.eye(num_classes)[labels[keep]]
    ak, wk = a[keep], w[keep][:, None]
    weights = np.linalg.solve(ak.T @ (wk * ak) + penalty * scale * np.eye(a.shape[1]), ak.T @ (wk * targets))
    return a[row] @ weights


@pytest.mark.parametrize("rows, dim, weighted", [(40, 6, False), (24, 50, False), (40, 6, True)])  # rows > dim, rows < dim
def test_leave_one_out_scores_equal_refits_without_each_row(rows, dim, weighted):
    rng = np.random.default_rng(rows)
    labels = np.arange(rows) % 3
    features = rng.normal(size=(rows, dim)) + 1.5 * np.eye(3, dim)[labels]
    w = np.where(labels == 0, 5.0, 1.0) if weighted else np.ones(rows)  # as class_weight={0: 5} weighs them
    fit = fit_ridge(features, labels, 3, penalties=(0.3,), sample_weight=w if weighted else None)
    refits = np.stack([_refit_without(features, labels, 3, 0.3, i, w) for i in range(rows)])
    np.testing.assert_allclose(fit.loo_scores, refits, rtol=1e-6, atol=1e-8)
    assert fit.loo_accuracy == pytest.approx(np.average(refits.argmax(1) == labels, weights=w))


def test_the_penalty_is_the_one_with_fewest_leave_one_out_errors_and_predicts_held_out_rows():
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 4
    features = rng.normal(size=(300, 30)) + 2.5 * np.eye(4, 30)[labels]
    penalties = (1e-4, 1.0, 1e4)
    fits = {p: fit_ridge(features[:200], labels[:200], 4, penalties=(p,)) for p in penalties}
    chosen = fit_ridge(features[:200], labels[:200], 4, penalties=penalties)
    assert chosen.loo_accuracy == max(f.loo_accuracy for f in fits.values())
    assert chosen.penalty == next(p for p in penalties if fits[p].loo_accuracy == chosen.loo_accuracy)
    held_out = np.mean(chosen.predict(features[200:]) == labels[200:])
    assert held_out > 0.25 + 0.3  # 4 balanced classes: chance is 0.25
    # The weights act on raw features: the same scores as standardising, then the standardised weights.
    assert np.allclose(chosen.scores(features[:5]), features[:5] @ chosen.weights + chosen.bias)


def test_the_softmax_temperature_minimises_the_cross_entropy_of_the_scores():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 500)
    scores = np.eye(3)[labels] * 0.4 + rng.normal(scale=0.3, size=(500, 3))
    t = softmax_temperature(scores, labels)

    def loss(factor):
        z = factor * scores
        z = z - z.max(1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(500), labels])

    assert 1.0 < t < 100.0
    assert loss(t) < loss(t / 1.5) and loss(t) < loss(t * 1.5) and loss(t) < loss(1.0)


def test_bad_shapes_and_weights_are_refused():
    with pytest.raises(ValueError, match="features"):
        fit_ridge(np.zeros((5, 3)), np.zeros(4, int), 2)
    with pytest.raises(ValueError, match="sample_weight"):
        fit_ridge(np.ones((4, 3)), np.array([0, 1, 0, 1]), 2, sample_weight=np.array([1.0, 0.0, 1.0, 1.0]))


def test_the_module_examples_run():
    import tl_keras.utils.ridge

    assert_examples_run(tl_keras.utils.ridge, 2)
