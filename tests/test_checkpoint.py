"""Resumable training: a run killed with SIGKILL and started again ends where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import HYMENOPTERA, asset
from tl_keras.checkpoint import RunCheckpoint

def _command(backbone):
    return ["train", asset(HYMENOPTERA), "--backbone", backbone, "--image-size", "32", "--batch-size", "16",
            "--head-epochs", "3", "--fine-tune-epochs", "3", "--unfreeze-blocks", "2", "--no-feature-cache", "--no-evaluate"]


def _launch(output, backbone):
    args = [sys.executable, "-m", "tl_keras.cli", *_command(backbone), "--output", str(output),
            "--metrics-json", str(output) + ".json"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _kill_once(output, backbone, phase, min_epoch):
    """Starts the command and SIGKILLs it once `phase` has saved epoch `min_epoch` (mid-next-epoch)."""
    proc = _launch(output, backbone)
    latest = os.path.join(str(output), ".checkpoint", f"phase{phase}", "LATEST")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(latest):
            with open(latest) as f:
                if int(f.read().split("-")[1]) >= min_epoch:
                    break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.communicate()[1][-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _finish(output, backbone):
    proc = _launch(output, backbone)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    with open(str(output) + ".json") as f:
        return json.load(f), stdout


def _weights(export_dir):
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in name}


def test_sigkilled_in_both_phases_then_rerun_ends_with_the_uninterrupted_weights(tmp_path, tiny_hub):
    # The mechanics do not depend on pretrained weights: a small Hub module keeps the five runs short.
    reference, _ = _finish(tmp_path / "reference", tiny_hub)
    assert not reference["resumed"]
    interrupted = tmp_path / "interrupted"
    _kill_once(interrupted, tiny_hub, phase=1, min_epoch=1)     # killed during phase 1's third epoch or so
    _kill_once(interrupted, tiny_hub, phase=2, min_epoch=4)     # resumed, then killed again in phase 2
    resumed, stdout = _finish(interrupted, tiny_hub)
    assert resumed["resumed"] and "resumed from a checkpoint" in stdout
    # The last process skipped the finished phase 1 and phase 2's first saved epochs (4/6 and 5/6).
    assert not any(f"Epoch {e}/" in stdout for e in range(1, 6)), stdout[-2000:]
    assert resumed["history"] == reference["history"]  # every epoch's metrics, both phases, bit for bit
    assert resumed["val_accuracy"] == reference["val_accuracy"]
    ref_weights, res_weights = _weights(reference["export_dir"]), _weights(resumed["export_dir"])
    assert ref_weights.keys() == res_weights.keys()
    for name, value in ref_weights.items():
        np.testing.assert_array_equal(res_weights[name], value, err_msg=name)
    assert not os.path.exists(interrupted / ".checkpoint")  # cleaned up after the export


def test_a_checkpoint_from_other_settings_is_refused_with_the_fix(tmp_path):
    RunCheckpoint(str(tmp_path / "ck"), {"head_epochs": 4, "seed": 1})
    RunCheckpoint(str(tmp_path / "ck"), {"head_epochs": 4, "seed": 1})  # the same run: resumable
    with pytest.raises(ValueError, match=r"other settings \(head_epochs: 4 then, 5 now\).*delete the folder"):
        RunCheckpoint(str(tmp_path / "ck"), {"head_epochs": 5, "seed": 1})
