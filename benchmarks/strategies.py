"""The advisor's choice against the fixed strategies, and pretrained against from scratch.

For each dataset: `tl_keras.advise` measures it and picks a plan; then every plan trains on the same
train/ and val/ folders with the same epoch budget (head epochs + fine-tune epochs), each in a fresh
process: head-only (the whole budget on the head, cached features), top-blocks (the backbone's
default top blocks), fine-tune-all (every block, layer decay 0.8), and, with `--scratch`, the same
architecture from random weights (`--compare-scratch`, same splits and epochs).

Run:  python benchmarks/strategies.py [--datasets hymenoptera flowers] [--scratch hymenoptera]
      (tl_keras's defaults: 224 px, 20 + 10 epochs, a constant phase-2 rate; the earlier table:
      --image-size 160 --head-epochs 10 --fine-tune-epochs 5 --schedule warmup-cosine)
Prints one table per dataset: val accuracy and training seconds of each arm, the advisor's arm marked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, Timer, require, run_arm, table, warm_file_cache  # noqa: E402

ARM = """
import json, sys, tl_keras
data, backbone, size, head, fine, strategy, scratch, schedule = sys.argv[1:9]
result = tl_keras.train(data, backbone=backbone, image_size=int(size), head_epochs=int(head), fine_tune_epochs=int(fine),
                        transfer=strategy, compare_scratch=scratch == "1", fine_tune_schedule=schedule,
                        export=False, evaluate=False, checkpoint_dir=None, verbose=0)
m = result.metrics
print(json.dumps({k: m[k] for k in ("val_accuracy", "head_val_accuracy", "train_seconds", "head_epochs", "fine_tune_epochs",
                                    "unfrozen_blocks", "cut", "layer_decay", "scratch")}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"], choices=sorted(DATASETS))
    parser.add_argument("--scratch", nargs="*", default=["hymenoptera"], help="datasets to also train from scratch")
    parser.add_argument("--backbone", default=HUB_100)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--head-epochs", type=int, default=20)
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--schedule", default="constant", help="phase 2 learning rate schedule")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    import tempfile

    script = os.path.join(tempfile.mkdtemp(prefix="tl_keras_strategies_"), "arm.py")
    with open(script, "w") as f:
        f.write(ARM)
    from tl_keras.tuning.advisor import advise

    results = {}
    for name in args.datasets:
        data = require(DATASETS[name])
        warm_file_cache(data)
        with Timer() as t:
            advice = advise(data, backbone=require(args.backbone), image_size=args.image_size)
        print(f"\n## {name}: advisor ({t.seconds:.1f} s)\n{advice.describe()}", flush=True)
        rows = []
        for strategy in ("head-only", "top-blocks", "fine-tune-all") + (("cut",) if advice.strategy == "cut" else ()):
            scratch = "1" if name in args.scratch and strategy == "top-blocks" else "0"
            out = run_arm(script, data, args.backbone, str(args.image_size), str(args.head_epochs),
                          str(args.fine_tune_epochs), strategy, scratch, args.schedule)
            rows.append({"arm": strategy + (" (advisor's choice)" if strategy == advice.strategy else ""),
                         "val accuracy": f"{out['val_accuracy']:.3f}", "train s": f"{out['train_seconds']:.1f}",
                         "epochs head+fine": f"{out['head_epochs']}+{out['fine_tune_epochs']}",
                         "trained blocks": len(out["unfrozen_blocks"]), "raw": out})
            print(rows[-1]["arm"], rows[-1]["val accuracy"], rows[-1]["train s"], flush=True)
            if out["scratch"]:
                s = out["scratch"]
                rows.append({"arm": "from scratch (same architecture)", "val accuracy": f"{s['val_accuracy']:.3f}",
                             "train s": f"{s['train_seconds']:.1f}", "epochs head+fine": f"{s['epochs']} (all layers)",
                             "trained blocks": "all", "raw": s})
                curve = ", ".join(f"{v:.2f}" for v in s["history"]["val_accuracy"])
                print(f"from scratch {s['val_accuracy']:.3f}; val accuracy by epoch: {curve}", flush=True)
        results[name] = {"advice": advice.to_dict(), "arms": [{k: v for k, v in r.items()} for r in rows]}
        print(f"\n{name} ({args.image_size} px, budget {args.head_epochs}+{args.fine_tune_epochs} epochs)")
        print(table(rows, ["arm", "val accuracy", "train s", "epochs head+fine", "trained blocks"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
