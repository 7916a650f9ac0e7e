"""Floor ratio: a training run's wall time over one inference pass over the same images.

One inference pass (decode the folder, build the classifier, predict every train and val image at
the same size) is the least any run must spend: it has to look at each image once. The ratio says
how many of those passes a run costs. Arms, each in a fresh process, side by side in one run:

- `inference`: the pass (decode included, as in the training arms);
- `defaults`: `tl_keras.train` at its defaults (phase 2 on the cached boundary activations);
- `streaming` (with `--streaming`): the same with `cache_boundary=False`, phase 2 running every
  image through the whole backbone every epoch (the code before boundary caching);
- `before issue 29` (with `--before-29`): the defaults before issue 29 (mirror images only, phase 2 at a
  constant rate with early stopping), to see what the adaptive defaults cost;
- `N blocks` (with `--blocks N ...`; `--four-blocks` is `--blocks 4`): the defaults with phase 2 on the
  top N blocks (MobileNetV2's default: 8, or 12 where the run measured no up).

The issue's target is a mean over seeds: `--seeds 0 1 2` runs the pair (inference pass, then the
training arms) once per seed, each pair back to back, and adds a row per dataset with the mean and
spread of the per-seed ratios and the ratio of the mean seconds.

Run:  python benchmarks/floor_ratio.py [--datasets hymenoptera flowers] [--seed 42 | --seeds 0 1 2] [--streaming]
                                       [--before-29] [--blocks 4 8]
Prints a table: seconds, ratio to the inference pass, val accuracy (head phase, final).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, require, run_arm, table, warm_file_cache  # noqa: E402


def inference_arm(data: str) -> dict:
    import keras

    from tl_keras.data.folder import load_image_folder
    from tl_keras.models.classifier import build_classifier

    from tl_keras.config import TrainConfig
    from tl_keras.models.preamble import resolve_spec

    keras.utils.set_random_seed(0)
    size = resolve_spec(data, TrainConfig(backbone=HUB_100)).image_size  # the size the defaults train at
    with Timer() as t:
        folder = load_image_folder(data, image_size=size)
        model = build_classifier(HUB_100, len(folder.class_names), image_size=size)
        for split in ("train", "val"):
            model.predict(folder.dataset(split, batch_size=32), verbose=0)
    return {"seconds": t.seconds, "images": len(folder.train) + len(folder.val), "image_size": size}


BEFORE_29 = {"symmetry": "flip", "fine_tune_schedule": "constant", "fine_tune_patience": 3, "image_size": 224}
TRAINING_ARMS = {"defaults": {}, "streaming": {"cache_boundary": False}, "before issue 29": BEFORE_29}


def arm_overrides(arm: str) -> dict:
    """An arm's `train` keywords: a named arm's, or `"N blocks"`: `unfreeze_blocks=N`."""
    return TRAINING_ARMS[arm] if arm in TRAINING_ARMS else {"unfreeze_blocks": int(arm.split()[0])}


def train_arm(data: str, seed: int, arm: str) -> dict:
    import tl_keras

    overrides = arm_overrides(arm)
    train = tl_keras.train  # imports the package's modules (about 5 s): the inference arm imports before its clock too
    with Timer() as t:
        result = train(data, backbone=HUB_100, seed=seed, export=False, evaluate=False, checkpoint_dir=None,
                       verbose=0, **overrides)
    m = result.metrics
    return {"seconds": t.seconds, "head": m["head_val_accuracy"], "final": m["val_accuracy"],
            "epochs": f"{m['head_epochs']}+{m['fine_tune_epochs']}", "boundary": m["boundary_cache"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"], choices=sorted(ALL_DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, help="one run per seed, and their mean (default: --seed)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--streaming", action="store_true", help="also time phase 2 without the boundary cache")
    parser.add_argument("--before-29", action="store_true", help="also time the defaults before issue 29")
    parser.add_argument("--blocks", nargs="+", type=int, default=[], metavar="N", help="also time phase 2 at the top N blocks")
    parser.add_argument("--four-blocks", action="store_true", help="the same as --blocks 4")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm, print its JSON
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        arm = inference_arm(args.data) if args.arm == "inference" else train_arm(args.data, args.seed, args.arm)
        print(json.dumps(arm))
        return
    require(HUB_100)
    args.seeds = args.seeds or [args.seed]
    rows = []
    for name in args.datasets:
        data = require(ALL_DATASETS[name])
        warm_file_cache(data)
        arms = ["inference", "defaults"] + (["streaming"] if args.streaming else []) + (["before issue 29"] if args.before_29 else [])
        arms += [f"{n} blocks" for n in dict.fromkeys(args.blocks + ([4] if args.four_blocks else []))]
        seconds: dict[str, list[float]] = {arm: [] for arm in arms}
        for seed in args.seeds:
            results = {arm: run_arm(__file__, "--arm", arm, "--data", data, "--seed", str(seed)) for arm in arms}
            floor = results["inference"]["seconds"]
            for arm, r in results.items():
                seconds[arm].append(r["seconds"])
                rows.append({"dataset": name, "seed": seed, "arm": arm, "images": results["inference"]["images"],
                             "px": results["inference"]["image_size"],
                             "seconds": f"{r['seconds']:.1f}", "ratio": f"{r['seconds'] / floor:.1f}x",
                             "epochs": r.get("epochs", ""), "head acc": f"{r['head']:.3f}" if "head" in r else "",
                             "final acc": f"{r['final']:.3f}" if "final" in r else ""})
        if len(args.seeds) > 1:
            for arm in arms[1:]:
                ratios = np.array(seconds[arm]) / np.array(seconds["inference"])
                rows.append({"dataset": name, "seed": "mean", "arm": arm,
                             "seconds": f"{np.mean(seconds[arm]):.1f} / {np.mean(seconds['inference']):.1f}",
                             "ratio": f"{ratios.mean():.1f}x +- {ratios.std(ddof=1):.1f} "
                                      f"({np.mean(seconds[arm]) / np.mean(seconds['inference']):.1f}x of means)"})
    print(table(rows, ["dataset", "seed", "arm", "images", "px", "seconds", "ratio", "epochs", "head acc", "final acc"]))
    print(f"seeds {' '.join(map(str, args.seeds))}, Hub MobileNetV2 1.0 at the size the defaults choose (px), {os.cpu_count()} CPU cores; the ratio "
          "divides each arm's wall time by the inference pass's (decode, model load and one predict over train + val, at that size).")


if __name__ == "__main__":
    main()
