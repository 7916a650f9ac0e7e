"""Resumable training: a run killed with SIGKILL and started again ends where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import hymenoptera_subset

from tl_keras.training.checkpoint import RunCheckpoint


def _command(backbone, data):
    return ["train", data, "--backbone", backbone, "--image-size", "32", "--batch-size", "16",
            "--head-epochs", "3", "--fine-tune-epochs", "3", "--unfreeze-blocks", "2", "--no-evaluate"]


def _finish(output, backbone, data):
    """The command as a user runs it, in a fresh process: (metrics, stdout)."""
    proc = subprocess.run([sys.executable, "-m", "tl_keras.cli", *_command(backbone, data), "--output", str(output),
                           "--metrics-json", str(output) + ".json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(str(output) + ".json") as f:
        return json.load(f), proc.stdout


def _uninterrupted(output, backbone, data):
    """The command run to its end in this process (a run in a new process gives the same weights, bit for
    bit: tests/test_cli.py reruns an export's config): its metrics."""
    from tl_keras.cli.commands import main

    assert main([*_command(backbone, data), "--output", str(output), "--metrics-json", str(output) + ".json"]) == 0
    with open(str(output) + ".json") as f:
        return json.load(f)


# The same run through the API, SIGKILLed by a callback in the middle of epoch EPOCH (0-based, both
# phases counted: phase 2 starts at 3), after its third batch: exactly where the test wants it, in
# phase 1 on the cached features or in phase 2 on the cached boundary activations.
_KILLED = """
import os, signal, sys
import keras
from tl_keras.cli.commands import main

EPOCH = int(sys.argv[1])

class Kill(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == EPOCH and batch == 2:
            print("killed in", self.model.name, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

import tl_keras.api
train = tl_keras.api.train
tl_keras.api.train = lambda *a, **k: train(*a, **{**k, "callbacks": [*k.get("callbacks", ()), Kill()]})
main(sys.argv[2:])
"""


def _kill_once(output, backbone, data, epoch):
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(epoch), *_command(backbone, data), "--output", str(output)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    return proc.stdout


def _weights(export_dir):
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in name}


def test_sigkilled_in_both_phases_then_rerun_ends_with_the_uninterrupted_weights(tmp_path, tiny_hub):
    # The mechanics do not depend on pretrained weights: a small Hub module and 48 + 40 photos per class
    # (6 batches an epoch) keep the four runs short; the uninterrupted one runs in this process.
    data = hymenoptera_subset(tmp_path / "labels.csv", train=48, val=40)
    reference = _uninterrupted(tmp_path / "reference", tiny_hub, data)
    assert not reference["resumed"]
    # The default path: phase 1 on cached features, phase 2 on cached boundary activations.
    assert reference["feature_cache"]["used"] and reference["boundary_cache"]["used"], reference["boundary_cache"]
    interrupted = tmp_path / "interrupted"
    assert "killed in feature_head" in _kill_once(interrupted, tiny_hub, data, epoch=1)  # phase 1, second epoch
    assert "killed in boundary_model" in _kill_once(interrupted, tiny_hub, data, epoch=4)  # phase 2, its second epoch
    resumed, stdout = _finish(interrupted, tiny_hub, data)
    assert resumed["resumed"] and "resumed from a checkpoint" in stdout
    # The last process skipped the finished phase 1 and phase 2's first saved epoch (4/6).
    assert not any(f"Epoch {e}/" in stdout for e in range(1, 5)) and "Epoch 5/6" in stdout, stdout[-2000:]
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


def test_the_best_epoch_so_far_survives_a_restart(tmp_path):
    """A phase resumed after a kill ends with the same best weights as an uninterrupted one, even when
    the best epoch came before the kill."""
    import keras

    from tl_keras.training.callbacks import BestEpoch
    from tl_keras.training.checkpoint import PhaseBackup

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    val = (rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32))

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        m.compile(keras.optimizers.SGD(2.0), "sparse_categorical_crossentropy")  # overshoots: val_loss goes up and down
        return m

    def run(epochs, directory, start=0):
        m, best = model(), BestEpoch()
        backup = PhaseBackup(str(directory))
        resume = backup.restore(m, best)
        m.fit(x, y, validation_data=val, initial_epoch=resume, epochs=epochs, callbacks=[best, backup], verbose=0, shuffle=False)
        return m, best, backup

    whole, best_whole, backup_whole = run(6, tmp_path / "whole")
    run(3, tmp_path / "split")  # "killed" after 3 epochs
    resumed, best_resumed, backup_resumed = run(6, tmp_path / "split")
    assert backup_resumed.history == backup_whole.history
    assert best_resumed.state()[0] == best_whole.state()[0]
    losses = backup_whole.history["val_loss"]
    assert best_whole.best_epoch == int(np.argmin(losses)) and best_whole.best_epoch < 5  # not simply the last
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


class _Stopped(Exception):
    """What a kill does to the run in process: nothing after it happens; the checkpoint keeps what
    was saved at the epoch ends before it."""


def test_a_depth_search_stopped_in_its_second_depth_resumes_to_the_uninterrupted_result(tmp_path, tiny_hub, monkeypatch):
    """unfreeze_blocks=(1, 2) stopped in the second depth's second epoch: the restart takes phase 1
    and the first depth from the checkpoint (one boundary pass, for the second depth), resumes the
    second depth, and ends with the uninterrupted search's records, history and weights; a restart
    after everything finished recomputes nothing."""
    import keras

    import tl_keras.training.phases as training
    from tl_keras.data.sources import load_data
    from tl_keras.models.classifier import build_classifier

    folder = load_data(hymenoptera_subset(tmp_path / "labels.csv", train=48, val=40), image_size=32)
    train_ds, val_ds = folder.dataset("train", batch_size=16, training=True), folder.dataset("val", batch_size=64)

    class StopInThirdFit(keras.callbacks.Callback):
        """Stops the run in the second epoch of its third fit (phase 1, depth 1, depth 2)."""

        def __init__(self):
            super().__init__()
            self.fits, self.epochs = 0, 0

        def on_train_begin(self, logs=None):
            self.fits, self.epochs = self.fits + 1, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs += 1

        def on_train_batch_end(self, batch, logs=None):
            if self.fits == 3 and self.epochs == 2 and batch == 1:
                raise _Stopped

    def run(directory, callbacks=()):
        keras.utils.set_random_seed(0)
        model = build_classifier(tiny_hub, 2, image_size=32, class_names=folder.class_names)
        history = training.fine_tune(model, train_ds, val_ds, head_epochs=2, fine_tune_epochs=3, unfreeze_blocks=(1, 2),
                                     fine_tune_learning_rate=3e-3, early_stopping_patience=0, folder=folder,
                                     checkpoint=str(directory), callbacks=callbacks, verbose=0)
        return model, history

    whole_model, whole = run(tmp_path / "whole")
    assert all(r["boundary_cache"] for r in whole.depth_search)
    with pytest.raises(_Stopped):
        run(tmp_path / "stopped", [StopInThirdFit()])
    passes = []
    boundary = training.compute_boundary
    monkeypatch.setattr(training, "compute_boundary", lambda *a, **k: passes.append(1) or boundary(*a, **k))
    epochs = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: passes.append(f"epoch {epoch}"))
    resumed_model, resumed = run(tmp_path / "stopped", [epochs])
    # One boundary pass (the second depth's), and epochs 3-4 of the second depth (epochs 0-1 are
    # phase 1's, 2-4 each depth's): phase 1, the first depth and the second's first epoch were restored.
    assert passes == [1, "epoch 3", "epoch 4"]
    assert [r["unfreeze_blocks"] for r in resumed.depth_search] == [1, 2]
    # What each depth scored is the same; its seconds and boundary_cache describe this process's work.
    work = ("seconds", "boundary_cache")
    scores = lambda records: [{k: v for k, v in r.items() if k not in work} for r in records]  # noqa: E731
    assert scores(resumed.depth_search) == scores(whole.depth_search)
    assert [r["boundary_cache"] for r in resumed.depth_search] == [False, True]
    assert resumed.history == whole.history and resumed.best_epochs == whole.best_epochs
    for a, b in zip(whole_model.weights, resumed_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

    # Restarted after everything had finished (killed while exporting, say): every phase and depth
    # comes from the checkpoint, and no boundary pass runs, since its result would not be used.
    passes.clear()
    again_model, again = run(tmp_path / "whole", [epochs])
    assert passes == [] and "had finished before the restart" in again.boundary_cache["reason"]
    assert scores(again.depth_search) == scores(whole.depth_search) and again.history == whole.history
    for a, b in zip(whole_model.weights, again_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
