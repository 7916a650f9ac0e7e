"""The callbacks a phase runs with: `EpochSeed` (sets the training pipeline's epoch record before
each epoch, so a resumed run sees the data an uninterrupted one saw) and `BestEpoch` (keeps the best
epoch's weights, stops after `patience` epochs without a better val_loss, and can require a
baseline: phase 2 must beat the head)."""

from __future__ import annotations

import keras
import tensorflow as tf


class EpochSeed(keras.callbacks.Callback):
    """Sets a training dataset's epoch counter at each epoch's start (see `tl_keras.data.epoch_variable`),
    so epoch `e`'s order and augmentation do not depend on how many passes ran before in this process."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of a phase's best epoch by `val_loss` and puts them back when the phase ends;
    with `patience`, stops the phase after that many epochs without a better one.

    With `baseline` (phase 1's best `val_loss`), an epoch must beat it to count, and a phase that never
    does ends with the weights it started from: phase 2 is kept only if it improves on the head.
    With `restore=False` it only stops early: the phase ends with its last epoch's weights
    (`restore_best=False`). `state()` / `load_state()` let a checkpoint carry it across a restart.
    """

    def __init__(self, patience: int | None = None, baseline: float | None = None, restore: bool = True):
        super().__init__()
        self.patience = patience
        self.restore = restore
        self.best = float("inf") if baseline is None else float(baseline)
        self.best_epoch: int | None = None
        self.wait = 0
        self.weights: list | None = None

    def on_train_begin(self, logs=None):
        if self.weights is None:  # a fresh phase (a resumed one has its state already)
            self.weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get("val_loss")
        if current is not None and current < self.best:
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self.weights = self.model.get_weights()
            return
        self.wait += 1
        if self.patience and self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore:
            self.model.set_weights(self.weights)

    def state(self) -> tuple[dict, list]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}, self.weights

    def load_state(self, state: dict, weights: list) -> None:
        self.best, self.best_epoch, self.wait, self.weights = state["best"], state["best_epoch"], state["wait"], weights
