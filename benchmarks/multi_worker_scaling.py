"""Images/second and scaling efficiency of training with 1, 2 and 3 MultiWorkerMirroredStrategy workers.

Each worker is a process on 127.0.0.1 with TF_CONFIG set, as on separate machines; the per-worker
batch is fixed, so the global batch grows with the workers (data parallelism). Measured on phase 2
(the backbone's top blocks training, where the compute is): the median epoch time after the first,
and images/second = training images / that time. Efficiency = (images/s with n workers) /
(n x images/s with 1). On one machine all workers share its cores, so here the numbers measure
tl_keras' distribution overhead, not a speed-up; with one GPU or machine per worker the same script
measures the real scaling.

Run:  python benchmarks/multi_worker_scaling.py [--workers 1 2 3] [--dataset hymenoptera] [--image-size 96]
Prints a table, then the efficiencies last.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_035, require, table  # noqa: E402

WORKER = """
import json, sys, time
import numpy as np
import keras
import tl_keras

class Times(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

times = Times()
result = tl_keras.train(sys.argv[1], backbone=sys.argv[2], image_size=int(sys.argv[3]), batch_size=int(sys.argv[4]),
                        head_epochs=1, fine_tune_epochs=int(sys.argv[5]), unfreeze_blocks=3, export=False,
                        evaluate=False, checkpoint_dir=None, callbacks=[times], verbose=0)
phase2 = times.seconds[result.metrics["head_epochs"]:]
print(json.dumps({"images": result.metrics["num_train_images"], "epoch_seconds": float(np.median(phase2[1:])),
                  "replicas": result.metrics["num_replicas"], "val_accuracy": result.metrics["val_accuracy"]}))
"""


def _ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_cluster(workers: int, args: list[str]) -> dict:
    hosts = [f"127.0.0.1:{p}" for p in _ports(workers)]
    procs = []
    with tempfile.TemporaryDirectory() as logs:
        for index in range(workers):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            if workers > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
            err = open(os.path.join(logs, f"{index}.err"), "w")
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, *args], stdout=subprocess.PIPE, stderr=err,
                                          text=True, env=env))
        outputs = [p.communicate()[0] for p in procs]
        for index, p in enumerate(procs):
            if p.returncode != 0:
                sys.exit(f"worker {index} of {workers} failed:\n" + open(os.path.join(logs, f"{index}.err")).read()[-3000:])
    return json.loads(outputs[0].strip().splitlines()[-1])  # the chief's measurements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dataset", default="hymenoptera", choices=sorted(DATASETS))
    parser.add_argument("--backbone", default=HUB_035)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16, help="per worker")
    parser.add_argument("--epochs", type=int, default=4, help="phase-2 epochs (the first is not timed)")
    args = parser.parse_args()
    results = {}
    for n in args.workers:
        results[n] = run_cluster(n, [require(DATASETS[args.dataset]), require(args.backbone), str(args.image_size),
                                     str(args.batch_size), str(args.epochs)])
        print(f"{n} worker(s): done", file=sys.stderr, flush=True)
    base = results[args.workers[0]]
    base_rate = base["images"] / base["epoch_seconds"] / args.workers[0]
    rows = []
    for n, r in results.items():
        rate = r["images"] / r["epoch_seconds"]
        rows.append({"workers": n, "global batch": args.batch_size * n, "phase-2 epoch s": f"{r['epoch_seconds']:.2f}",
                     "images/s": f"{rate:.0f}", "efficiency": f"{rate / (n * base_rate):.2f}",
                     "val acc": f"{r['val_accuracy']:.3f}"})
    print(f"{args.dataset}, {os.path.basename(os.path.normpath(args.backbone))} at {args.image_size} px, "
          f"per-worker batch {args.batch_size}, {os.cpu_count()} CPU cores shared by all workers")
    print(table(rows, list(rows[0])))
    print("scaling efficiency: " + ", ".join(f"{r['workers']} workers {r['efficiency']}" for r in rows))


if __name__ == "__main__":
    main()
