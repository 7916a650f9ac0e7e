"""Evaluation reports: checked against scikit-learn's metrics, and on a real 5-class run."""

import numpy as np
import pytest
from sklearn import metrics as skm

from tl_keras.evaluation.report import (
    classification_report,
    default_top_k,
    format_report,
)


def test_report_matches_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    logits = rng.normal(size=(300, 7)) + 2.0 * np.eye(7)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = [f"c{i}" for i in range(7)]
    report = classification_report(labels, probabilities, names, paths=[f"{i}.jpg" for i in range(300)])
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, probabilities.argmax(1), zero_division=0)
    for i, name in enumerate(names):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i]) and row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i]) and row["support"] == support[i]
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(labels, probabilities.argmax(1)))
    assert report["top_k"] == 5 and report["top_k_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, probabilities, k=5))
    assert report["confusion_matrix"] == skm.confusion_matrix(labels, probabilities.argmax(1)).tolist()
    assert report["macro_avg"]["f1"] == pytest.approx(f1.mean())
    assert report["weighted_avg"]["recall"] == pytest.approx(np.average(recall, weights=support))
    errors = report["most_confident_errors"]
    assert len(errors) == 20 and all(e["true"] != e["predicted"] for e in errors)
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True)
    wrong = probabilities.argmax(1) != labels
    assert confidences[0] == pytest.approx(probabilities[wrong].max())


def test_multi_label_report_and_thresholds_match_scikit_learn():
    from tl_keras.evaluation.report import best_thresholds, multi_label_report

    rng = np.random.default_rng(1)
    flags = (rng.random((200, 4)) < [0.5, 0.3, 0.2, 0.4]).astype(np.float32)
    scores = np.clip(0.35 * flags + rng.random((200, 4)) * 0.65, 0, 1).round(2)  # rounded: ties
    thresholds = best_thresholds(flags, scores)
    for c, t in enumerate(thresholds):  # no threshold gives a better F1 on these images
        best = max(skm.f1_score(flags[:, c], scores[:, c] >= s, zero_division=0) for s in np.unique(scores[:, c]))
        assert skm.f1_score(flags[:, c], scores[:, c] >= t) == pytest.approx(best)
    names = ["a", "b", "c", "d"]
    report = multi_label_report(flags, scores, names, thresholds, paths=[f"{i}.jpg" for i in range(200)])
    predicted = scores >= np.array(thresholds)
    assert report["micro_f1"] == pytest.approx(skm.f1_score(flags, predicted, average="micro"))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(flags, predicted, average="macro"))
    assert report["mean_average_precision"] == pytest.approx(skm.average_precision_score(flags, scores, average="macro"))
    assert report["subset_accuracy"] == pytest.approx(skm.accuracy_score(flags, predicted))
    for c, name in enumerate(names):
        assert report["per_class"][name]["average_precision"] == pytest.approx(skm.average_precision_score(flags[:, c], scores[:, c]))
        assert report["per_class"][name]["support"] == int(flags[:, c].sum())
    errors = report["most_confident_errors"]
    assert errors and all(set(e["true"]) != set(e["predicted"]) for e in errors)
    text = format_report(report, "multi")
    assert "mAP" in text and "threshold" in text and text.startswith("multi")


def test_edge_cases_and_text():
    # Class "c" is never predicted and has no images; "b" is never predicted but has one.
    report = classification_report(np.array([0, 0, 1]), np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1]]),
                                   ["a", "b", "c"])
    assert report["per_class"]["b"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1, "accuracy": 0.0}
    assert report["per_class"]["c"]["recall"] is None and report["per_class"]["c"]["f1"] is None
    assert report["top_k"] == 2 and report["top_k_accuracy"] == 1.0
    text = format_report(report, "title")
    assert text.startswith("title") and "confusion matrix" in text and "0.600 a (true b)" in text
    assert default_top_k(2) == 1 and default_top_k(5) == 2 and default_top_k(6) == 5
    with pytest.raises(ValueError, match="shape"):
        classification_report(np.array([0, 1]), np.ones((3, 2)), ["a", "b"])


def test_train_reports_per_class_metrics_on_real_flowers(flowers_result):
    report = flowers_result.metrics["evaluation"]["val"]
    assert report["num_images"] == 400 and set(report["per_class"]) == {"daisy", "dandelion", "roses", "sunflowers", "tulips"}
    # The report is measured on the exported model: it agrees with the last epoch's val accuracy.
    assert report["accuracy"] == pytest.approx(flowers_result.metrics["val_accuracy"], abs=1e-6)
    assert report["accuracy"] > 0.5 and report["top_k"] == 2 and report["top_k_accuracy"] > report["accuracy"]
    assert sum(map(sum, report["confusion_matrix"])) == 400
    assert all(e["path"].startswith(flowers_result.data.root) for e in report["most_confident_errors"])
    assert flowers_result.metrics["class_weight"] == {str(i): 1.0 for i in range(5)}  # 160 per class: balanced


def test_exported_model_evaluate_gives_the_same_report(flowers_result):
    from tl_keras.serving.client import ExportedModel

    report = ExportedModel(flowers_result.export_dir).evaluate(flowers_result.data.root, image_size=64)
    trained = flowers_result.metrics["evaluation"]["val"]
    assert report["split"] == "val" and report["confusion_matrix"] == trained["confusion_matrix"]
    assert report["per_class"]["roses"]["f1"] == pytest.approx(trained["per_class"]["roses"]["f1"])
