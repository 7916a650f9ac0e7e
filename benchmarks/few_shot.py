"""(p) Many classes, few images each: does a head that starts from class prototypes, or from the ridge classifier, pay?

The set: every class of the five shared sets (35 classes: ants, bees; 5 flowers; 10 aerial scenes;
8 blood cells; 10 materials), `--per-class` training images each (default 6, drawn per seed from the
class's train split) and the first 20 val images of each class (the same for every seed). Each arm is
`tl_keras.train` at its defaults (Hub MobileNetV2 1.0, 224 px, both phases) but for `head_init`, each
(arm, seed) in a fresh process.

Run:  python benchmarks/few_shot.py [--seeds 0 1 2] [--per-class 6] [--arms "ridge start" ...]
Prints one row per arm: mean +- std over the seeds of the head's and the final val accuracy, epochs,
the gain over the random start on the same seeds, and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, require, run_arm, table  # noqa: E402

ARMS = {"random start": {"head_init": "random"}, "prototypes": {"head_init": "prototypes"},
        "ridge start": {"head_init": "ridge"}}
VAL_PER_CLASS = 20


def write_labels(path: str, per_class: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    rows = ["path,label,split"]
    for name, root in ALL_DATASETS.items():
        for cls in sorted(os.listdir(os.path.join(require(root), "train"))):
            for split, n in (("train", per_class), ("val", VAL_PER_CLASS)):
                folder = os.path.join(root, split, cls)
                files = sorted(os.listdir(folder))
                chosen = rng.choice(files, n, replace=False) if split == "train" else files[:n]
                rows += [f"{os.path.join(folder, f)},{name}/{cls},{split}" for f in sorted(chosen)]
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


def train_arm(labels: str, seed: int, overrides: dict) -> dict:
    import tl_keras

    with Timer() as t:
        result = tl_keras.train(labels, backbone=HUB_100, seed=seed, evaluate=False, checkpoint_dir=None, export=False,
                                verbose=0, label_check=False, near_duplicate_check=False, **overrides)
    m = result.metrics
    return {"seconds": t.seconds, "head": m["head_val_accuracy"], "final": m["val_accuracy"],
            "epochs": f"{m['head_epochs']}+{m['fine_tune_epochs']}", "classes": len(m["class_names"]),
            "train": m["num_train_images"], "val": m["num_val_images"], "head_init": m["head_init"]}


def _stats(values: list[float]) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                        help="the arms to run (default: all; `random start` is always run, the gains are over it)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(train_arm(args.labels, args.seed, ARMS[args.arm])))
        return
    require(HUB_100)
    arms = ["random start"] + [a for a in args.arms if a != "random start"]
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            labels = write_labels(os.path.join(tmp, f"labels_{seed}.csv"), args.per_class, seed)
            for arm in arms:
                runs[arm].append(run_arm(__file__, "--arm", arm, "--labels", labels, "--seed", str(seed)))
                print(f"seed {seed} {arm}: {runs[arm][-1]}", file=sys.stderr, flush=True)
    base = runs["random start"]
    rows = [{"arm": arm, "classes / train / val": f"{r[0]['classes']} / {r[0]['train']} / {r[0]['val']}",
             "epochs": " ".join(x["epochs"] for x in r), "head val acc": _stats([x["head"] for x in r]),
             "final val acc": _stats([x["final"] for x in r]),
             "gain vs random start": "" if arm == "random start" else _stats([x["final"] - b["final"] for x, b in zip(r, base)]),
             "seconds (mean)": f"{np.mean([x['seconds'] for x in r]):.0f}"} for arm, r in runs.items()]
    print(f"seeds {args.seeds}; {args.per_class} training images per class; Hub MobileNetV2 1.0, 224 px, defaults but head_init")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
