"""Shared by the benchmark scripts: where the real assets are, and a wall-clock timer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.environ.get("TL_KERAS_ASSETS", os.path.join(os.path.dirname(ROOT), "shared", "assets"))
HUB_100 = os.path.join(ASSETS, "hub", "mobilenet_v2_100_224_feature_vector")
HUB_035 = os.path.join(ASSETS, "hub", "mobilenet_v2_035_224_feature_vector")
KERAS_100 = os.path.join(ASSETS, "weights", "mobilenet_v2_1.0_224_no_top.h5")
DATASETS = {name: os.path.join(ASSETS, "datasets", name) for name in ("hymenoptera", "flowers")}
# The photo sets above, and the sets from domains far from ImageNet (see ../shared/assets/README.md).
FAR_DATASETS = {name: os.path.join(ASSETS, "datasets", name) for name in ("aerial_aid", "blood_cells", "materials_fmd")}
ALL_DATASETS = {**DATASETS, **FAR_DATASETS}


def require(path: str) -> str:
    if not os.path.exists(path):
        sys.exit(f"Missing asset {path}: the benchmarks read ../shared/assets beside the project "
                 "(or the folder in TL_KERAS_ASSETS).")
    return path


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `rows` (dicts) in `columns` order."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def count_files(folder: str, split: str) -> int:
    """The files under `folder/split` (every one of the shared sets' files is an image)."""
    return sum(len(files) for _, _, files in os.walk(os.path.join(folder, split)))


def warm_file_cache(folder: str) -> None:
    """Reads every file once so no arm of a comparison pays for a cold disk."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                f.read()


def run_arm(script: str, *args: str) -> dict:
    """Runs one arm of a comparison in a fresh Python process; returns the JSON it prints last."""
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        sys.exit(f"{os.path.basename(script)} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
