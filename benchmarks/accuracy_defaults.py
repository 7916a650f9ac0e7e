"""(g) Accuracy at the defaults, and the candidate changes to them, on both sets and several seeds.

Each arm is `tl_keras.train` with every setting at its default (Hub MobileNetV2 1.0; the input size the
photos choose, `tl_keras.models.preamble.photo_input_size`) except
the arm's overrides, each (dataset, seed, arm) in a fresh process. After training, the model's val
accuracy is measured twice on the same weights: plain, and with flip test-time augmentation (the
image and its mirror image averaged, `tl_keras.evaluation.tta.flip_averaged`), so TTA is judged on every arm
without training twice. Defaults are chosen from the mean over both sets and all seeds, not from one
val split; a change is worth making when it helps on both sets.

Run:  python benchmarks/accuracy_defaults.py [--datasets hymenoptera flowers] [--seeds 0 1 2]
                                             [--arms defaults "label smoothing 0.1" ...]
                                             [--baseline "before issue 29"] [--reuse earlier.json ...]
Prints one row per (dataset, arm): mean +- std of head, final and final+TTA val accuracy, the
mean gain over the `--baseline` arm (default `defaults`) on the same seeds, and seconds; the gains
are printed last. For the
`depth search` arm (`unfreeze_blocks="search"`), also what each depth tried scored on each seed and
which one the run chose.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, require, run_arm, table, warm_file_cache  # noqa: E402

# The defaults before issue 29 (tl_keras 0.1): mirror images only; phase 2 at a constant rate, stopped early.
BEFORE_29 = {"symmetry": "flip", "fine_tune_schedule": "constant", "fine_tune_patience": 3, "image_size": 224}
ARMS = {
    "defaults": {},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "4 boundary views": {"boundary_views": 4},
    "8 blocks": {"unfreeze_blocks": 8},
    "label smoothing 0.1 + 4 views": {"label_smoothing": 0.1, "boundary_views": 4},
    "8 blocks + label smoothing 0.1 + 4 views": {"unfreeze_blocks": 8, "label_smoothing": 0.1, "boundary_views": 4},
    "augment strong": {"augment": "strong"},
    "augment none": {"augment": "none"},
    "depth search": {"unfreeze_blocks": "search"},
    "288 px": {"image_size": 288},
    "384 px": {"image_size": 384},  # materials_fmd's photos' own short side (docs/benchmarks/accuracy.md, framing)
    # The defaults before the input size followed the photos (2026-12-07): the backbone's own size.
    "224 px": {"image_size": 224},
    # The framing: the defaults cut each photo to its centred square (`crop_to_aspect_ratio=True`);
    # the default before it squeezed the whole photo into the square.
    "squeezed": {"crop_to_aspect_ratio": False},
    # An experiment, not a tl_keras setting: every photo cut to its central square of 87.5% of its
    # short side before the 224 px resize (ImageNet's evaluation crop, zoomed in 1.14x).
    "224 px, centre crop 87.5%": {"centre_crop": 0.875},
    # Issue 29. Each lever alone on top of the defaults before it: mirror images only, phase 2 at a
    # constant tenth of the head's rate with early stopping.
    "before issue 29": BEFORE_29,
    "symmetry flip": {"symmetry": "flip"},
    "symmetry dihedral": {**BEFORE_29, "symmetry": "dihedral"},
    # Phase 1 trains on cached features, so its epochs cost little; the far sets' heads hit the cap of 20.
    "head 60 epochs": {**BEFORE_29, "head_epochs": 60},
    "phase 2 warmup-cosine, patience 3": {**BEFORE_29, "fine_tune_schedule": "warmup-cosine", "fine_tune_patience": 3},
    # Phase 2's start: a constant rate a hundredth of the head's, or a tenth reached by a warm-up and decayed
    # to 0 with no early stop (the decay is what settles it; restore_best still keeps the head if it loses).
    "phase 2 rate 1e-5": {**BEFORE_29, "fine_tune_learning_rate": 1e-5},
    "phase 2 warmup-cosine, no patience": {**BEFORE_29, "fine_tune_schedule": "warmup-cosine", "fine_tune_patience": 0},
    # How phase 1's head starts: from Keras' random weights (the default before 2026-12-07) or from the
    # ridge classifier of the cached features (`head_init="ridge"`, what the default "auto" now chooses).
    "random head": {"head_init": "random"},
    "ridge head": {"head_init": "ridge"},
    # Phase 2's length: where it runs the decaying schedule with no early stop (the dihedral sets) its
    # epochs are most of a run's time; the schedule spans whatever number of epochs it is given.
    "phase 2 6 epochs": {"fine_tune_epochs": 6},
    # Or its depth: the top 4 blocks (block_13-16, whose output is 7x7) cost about half the 8 blocks' compute per epoch.
    "4 blocks": {"unfreeze_blocks": 4},
    # The other two guesses for far domains: the same 8 blocks with discriminative rates (each
    # block 0.8x the rate of the one above: block_9 at 0.21x), no more compute; or deeper, 12 blocks
    # (block_5-16, from the 28x28 activations), more compute per epoch.
    "layer decay 0.8": {"layer_decay": 0.8},
    "12 blocks": {"unfreeze_blocks": 12},
    # The two levers that paid, together, spelled out (so the arm stays what it is when the defaults move).
    "auto symmetry + phase 2 warmup-cosine": {"symmetry": "auto", "fine_tune_schedule": "warmup-cosine",
                                              "fine_tune_patience": None},
}
RUN_SETTINGS = dict(evaluate=False, checkpoint_dir=None, export=False, verbose=0)


def train_arm(data: str, seed: int, overrides: dict) -> dict:
    import numpy as np
    import tensorflow as tf

    import tl_keras
    from tl_keras.evaluation.tta import flip_averaged

    overrides = dict(overrides)
    if "centre_crop" in overrides:
        _crop_before_resize(overrides.pop("centre_crop"))
    with Timer() as t:
        result = tl_keras.train(data, backbone=HUB_100, seed=seed, **RUN_SETTINGS, **overrides)
    folder, model = result.data, result.model
    labels = folder.val.labels

    def accuracy(fn) -> float:
        predict = tf.function(fn, reduce_retracing=True)
        probs = np.concatenate([predict(x).numpy() for x, _ in folder.dataset("val", batch_size=32)])
        return float(np.mean(probs.argmax(-1) == labels))

    plain = lambda x: model(x, training=False)  # noqa: E731
    m = result.metrics
    return {"seconds": t.seconds, "head": m["head_val_accuracy"], "final": accuracy(plain),
            "tta": accuracy(flip_averaged(plain)), "epochs": f"{m['head_epochs']}+{m['fine_tune_epochs']}",
            "depth_search": m["depth_search"], "fine_tune_kept": m["fine_tune_kept"],
            "symmetry": (m["symmetry"] or {}).get("chosen")}


def _crop_before_resize(fraction: float) -> None:
    """Makes the folder loader cut each photo to its central square (`fraction` of the short side)
    before its one resize: for this process only, training and val images alike."""
    import tensorflow as tf

    from tl_keras.images import codec, quality

    resize = codec.resize_uint8

    def cropped(image, image_size: int, crop_to_aspect_ratio: bool = True):
        image = tf.convert_to_tensor(image)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * fraction, tf.int32)
        return resize(tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side), image_size)

    codec.resize_uint8 = cropped  # the streamed path's resize
    quality.resize_uint8 = cropped  # the in-memory path's (each file is checked and resized there)


def _stats(values: list[float]) -> str:
    import numpy as np

    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"], choices=list(ALL_DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS)[:4], choices=list(ARMS))
    parser.add_argument("--reuse", nargs="+", default=[], metavar="JSON",
                        help="earlier runs of this script (--save): the arms (and sets) they hold with the same "
                        "seeds are not run again (runs are deterministic on one machine); never their `defaults`, "
                        "which may have been other settings then")
    parser.add_argument("--baseline", default="defaults", choices=list(ARMS),
                        help="the arm the gains are measured against (default: defaults)")
    parser.add_argument("--save", metavar="JSON", help="write every arm's per-seed results here")
    parser.add_argument("--without-defaults", action="store_true", help="run only --arms (no gains over the "
                        "baseline are printed): for the depth search, whose records hold the default depth's score")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: one arm, in this fresh process
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(train_arm(args.data, args.seed, ARMS[args.arm])))
        return
    require(HUB_100)
    arms = ([] if args.without_defaults else [args.baseline]) + [a for a in args.arms if a != args.baseline]
    rows, gains, saved = [], [], {}
    for name in args.datasets:
        data_dir = require(ALL_DATASETS[name])
        warm_file_cache(data_dir)
        runs = {}
        for path in args.reuse:
            with open(path) as f:
                runs.update({k: v for k, v in json.load(f).get(name, {}).items()
                             if k in arms and k != "defaults" and len(v) == len(args.seeds) and k not in runs})
        for arm in arms:
            if arm in runs:
                continue
            runs[arm] = [run_arm(__file__, "--arm", arm, "--data", data_dir, "--seed", str(seed)) for seed in args.seeds]
            print(f"{name} {arm}: {[(r['final'], r['tta']) for r in runs[arm]]}", file=sys.stderr, flush=True)
        for arm, results in runs.items():
            base = runs.get(args.baseline, [{"final": float("nan")}] * len(results))
            gain = [r["final"] - d["final"] for r, d in zip(results, base)]
            gain_tta = [r["tta"] - d["final"] for r, d in zip(results, base)]
            rows.append({"dataset": name, "arm": arm, "epochs": " ".join(r["epochs"] for r in results),
                         "head val acc": _stats([r["head"] for r in results]),
                         "final val acc": _stats([r["final"] for r in results]),
                         "final + flip TTA": _stats([r["tta"] for r in results]),
                         "gain": "" if arm == args.baseline else _stats(gain),
                         "gain with TTA": _stats(gain_tta),
                         "seconds (mean)": f"{sum(r['seconds'] for r in results) / len(results):.1f}"})
            gains.append(f"{name} {arm}: {sum(gain) / len(gain):+.4f} (with TTA {sum(gain_tta) / len(gain_tta):+.4f})")
        saved[name] = runs
    if args.save:
        with open(args.save, "w") as f:
            json.dump(saved, f, indent=2)
    print(f"seeds {args.seeds}; Hub MobileNetV2 1.0, the size the photos choose unless an arm says; arms: {[ (a, ARMS[a]) for a in arms]}")
    print(table(rows, ["dataset", "arm", "epochs", "head val acc", "final val acc", "final + flip TTA",
                       "gain", "gain with TTA", "seconds (mean)"]))
    print(f"mean gain over {args.baseline} (final val accuracy): " + "; ".join(gains))
    searched = [(name, seed, r) for name, runs in saved.items() for arm, results in runs.items()
                for seed, r in zip(args.seeds, results) if r.get("depth_search")]
    if searched:
        print(table([_depth_row(name, seed, r) for name, seed, r in searched],
                    ["dataset", "seed", "head", "tried: val acc at best val_loss (epochs)", "chosen", "final", "seconds"]))


def _depth_row(name: str, seed: int, result: dict) -> dict:
    """One searched run: each depth's score ('*' chosen, '-' did not beat the head), and its choice."""
    tried = ", ".join(f"{t['unfreeze_blocks']}: {t['val_accuracy']:.3f} ({t['epochs']})" + ("*" if t["chosen"] else "")
                      + ("" if t["beat_head"] else "-") for t in result["depth_search"])
    chosen = next((t for t in result["depth_search"] if t["chosen"]), None)
    return {"dataset": name, "seed": seed, "head": f"{result['head']:.3f}", "tried: val acc at best val_loss (epochs)": tried,
            "chosen": f"{chosen['unfreeze_blocks']} blocks" if chosen else "the head",
            "final": f"{result['final']:.3f}", "seconds": f"{result['seconds']:.1f}"}


if __name__ == "__main__":
    main()
