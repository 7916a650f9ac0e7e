"""Images whose given class is likely wrong, found by `cleanlab` from out-of-fold probabilities of a
linear head on the backbone features a run caches anyway (no backbone pass of its own).

Each image's class probabilities come from a logistic-regression head (scikit-learn, which cleanlab
installs) fitted on the other folds, so no image is judged by a head that saw its label; cleanlab's
`find_label_issues` then ranks the images whose given class the probabilities contradict (confident
learning, Northcutt et al. 2021). Train and val images are judged together: a wrong label in val
misleads every decision made on val accuracy. Needs the `labels` extra (`pip install
"tl_keras[labels]"`); without it the check says so and is skipped.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features = np.concatenate([rng.normal(0, 1, (40, 8)), rng.normal(3, 1, (40, 8))])
    >>> labels = np.array([0] * 40 + [1] * 40); labels[3] = 1  # one image labelled wrongly
    >>> [issue["index"] for issue in find_label_issues(features, labels, ["a", "b"])]  # doctest: +SKIP
    [3]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tl_keras.utils.checks import missing_extra

FOLDS = 5


def missing_library() -> str | None:
    """Why the label check cannot run here (cleanlab or scikit-learn not installed), or None."""
    missing = missing_extra("labels", "cleanlab.filter", "sklearn.linear_model")
    return missing and f"label issues not checked: {missing}"


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """`[n, classes]` probabilities of a logistic-regression head, each row from the head fitted
    on the folds its image is not in (stratified, seeded)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(head, features, labels, cv=split, method="predict_proba")


def find_label_issues(features: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                      paths: Sequence[str] | None = None, *, seed: int = 0) -> list[dict]:
    """The images cleanlab finds likely mislabelled, most likely first: `{"index", "path", "given",
    "predicted", "confidence"}` (the head's probability of the predicted class). Classes with fewer
    than 2 images are left out of the judgement (no fold could learn them).

    Args:
        features: `[n, dim]` backbone features, one row per image.
        labels: the given class index of each row.
        class_names: index -> name.
        paths: each row's file (for the report); defaults to the row numbers.
        seed: the folds' seed.
    """
    from cleanlab.filter import find_label_issues as cleanlab_issues

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(class_names))
    judged = np.flatnonzero(counts[labels] >= 2)
    classes = np.flatnonzero(counts >= 2)
    if len(classes) < 2:
        return []
    remap = {int(c): i for i, c in enumerate(classes)}
    y = np.array([remap[int(v)] for v in labels[judged]])
    probabilities = out_of_fold_probabilities(features[judged], y, min(FOLDS, int(counts[classes].min())), seed)
    ranked = cleanlab_issues(y, probabilities, return_indices_ranked_by="self_confidence")
    issues = []
    for row in ranked:
        index = int(judged[row])
        predicted = int(classes[int(np.argmax(probabilities[row]))])
        issues.append({"index": index, "path": paths[index] if paths is not None else str(index),
                       "given": class_names[int(labels[index])], "predicted": class_names[predicted],
                       "confidence": round(float(probabilities[row].max()), 4)})
    return issues
