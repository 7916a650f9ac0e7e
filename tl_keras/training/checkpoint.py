"""Resumable two-phase training: per-epoch backups, finished-phase records, and run settings.

A checkpoint folder holds:

- `run.json`: the settings the run was started with; resuming with other settings is refused;
- `phase1/`, `phase2/`: the running phase's last epoch state (`PhaseBackup`): weights and optimizer
  as Keras saves them, the random-generator states Keras does not save (dropout's), the epoch, the
  phase's history so far, and its best epoch so far (weights and patience count);
- `phase1.npz` + `phase1.json`, `phase2.npz` + `phase2.json`: a finished phase's model weights and
  history, so a restart skips it;
- in a phase-2 depth search (`unfreeze_blocks="search"`), `phase2_top<N>/` and `phase2_top<N>.npz` +
  `.json` in place of `phase2`, one per depth tried.

Every file is written to a temporary name and renamed, so a kill at any moment leaves either the
previous or the new state, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import numpy as np

from tl_keras.utils.files import atomic_write, read_json, write_json


def _rng_variables(model: keras.Model) -> list:
    """Variables a model owns besides its weights: the seed-generator states of dropout and other
    random layers, which `save_weights` leaves out but a repeatable run needs."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def build_optimizer(model: keras.Model) -> None:
    """Creates the optimizer's slot variables for `model`'s trainable variables now, eagerly, in the
    model's strategy: before a checkpoint's optimizer state is loaded into them, and before every
    `fit` of tl_keras (`tl_keras.training`). Left to Keras they are made while the first training
    step traces, at ~20 ms a variable (3-4 s for phase 2's 8 blocks on 2 cores), against 0.13 s
    here; the values are the same zeros."""
    if model.optimizer is not None and not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)


class PhaseBackup(keras.callbacks.Callback):
    """Saves a phase's full training state at every epoch's end; `restore` picks it up after a restart.

    The state is the model's weights with its optimizer's (Keras `save_weights`), the random-generator
    states `save_weights` leaves out (dropout's), the finished epoch and the history so far. Each epoch
    is written to a temporary folder, renamed to `epoch-NNNNN/`, and only then named in `LATEST`
    (itself replaced atomically), so a kill at any instant leaves a complete state to resume from.

    Args:
        directory: the phase's backup folder.
        initial_epoch: the phase's first epoch (epochs count on across phases).
        writer: whether this process writes the state (under multi-worker training only the chief
            does; every worker reads it). Defaults to True.
    """

    def __init__(self, directory: str, initial_epoch: int = 0, writer: bool = True):
        super().__init__()
        self.directory = directory
        self.initial_epoch = initial_epoch
        self.writer = writer
        self.history: dict[str, list[float]] = {}
        self.best = None

    def _latest(self) -> str | None:
        pointer = os.path.join(self.directory, "LATEST")
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8") as f:
            return os.path.join(self.directory, f.read().strip())

    def resume_epoch(self) -> int:
        """The epoch the saved state continues from (the phase's first epoch when nothing is saved)."""
        state = self._latest()
        return self.initial_epoch if state is None else read_json(os.path.join(state, "state.json"))["epoch"] + 1

    def restore(self, model: keras.Model, best=None) -> int:
        """Loads the last saved state into `model` (compiled) and `best` (a `tl_keras.training.BestEpoch`,
        saved with the state from then on); returns the epoch to continue from."""
        self.best = best
        state = self._latest()
        if state is None:
            return self.initial_epoch
        build_optimizer(model)  # its variables must exist to be loaded
        with model.distribute_strategy.scope():
            model.load_weights(os.path.join(state, "model.weights.h5"))
        with np.load(os.path.join(state, "rng.npz")) as saved:
            for i, variable in enumerate(_rng_variables(model)):
                variable.assign(saved[f"v{i}"])
        meta = read_json(os.path.join(state, "state.json"))
        self.history = meta["history"]
        if best is not None and "best" in meta:
            with np.load(os.path.join(state, "best.npz")) as saved:
                best.load_state(meta["best"], [saved[f"w{i}"] for i in range(len(saved.files))])
        return meta["epoch"] + 1

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        # Every worker reads the state (reading synchronised-on-read variables is a collective that
        # all workers must join), but only the writer keeps it.
        if not self.writer:
            with tempfile.TemporaryDirectory(prefix="tl_keras_worker_state_") as scratch:
                self.model.save_weights(os.path.join(scratch, "model.weights.h5"))
            for variable in _rng_variables(self.model):
                keras.ops.convert_to_numpy(variable)
            return
        os.makedirs(self.directory, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".tmp-", dir=self.directory)
        self.model.save_weights(os.path.join(staging, "model.weights.h5"))
        values = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(_rng_variables(self.model))}
        np.savez(os.path.join(staging, "rng.npz"), **values)
        meta = {"epoch": epoch, "history": self.history}
        if self.best is not None:  # the best epoch so far: its weights and how long since
            meta["best"], weights = self.best.state()
            np.savez(os.path.join(staging, "best.npz"), **{f"w{i}": w for i, w in enumerate(weights)})
        write_json(os.path.join(staging, "state.json"), meta)
        name = f"epoch-{epoch:05d}"
        target = os.path.join(self.directory, name)
        if os.path.exists(target):  # left by a run killed between this rename and the pointer update
            shutil.rmtree(target)
        os.rename(staging, target)
        atomic_write(os.path.join(self.directory, "LATEST"), lambda f: f.write(name.encode()))
        for old in os.listdir(self.directory):
            if old != name and (old.startswith("epoch-") or old.startswith(".tmp-")):
                shutil.rmtree(os.path.join(self.directory, old), ignore_errors=True)


def _flat(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level, `config.head_epochs` style, so a mismatch names the setting."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class RunCheckpoint:
    """The checkpoint folder of one training run (see the module docstring).

    Args:
        directory: the folder; created on first use.
        settings: what defines the run (JSON-able). A folder started with other settings is refused
            with an error saying how to start over.
        writer: whether this process writes (under multi-worker training: the chief only; the other
            workers read the chief's state on a restart, so the folder must be on storage they all
            see). Defaults to True.
    """

    def __init__(self, directory: str, settings: dict, writer: bool = True):
        self.directory = directory
        self.writer = writer
        path = os.path.join(directory, "run.json")
        if os.path.exists(path):
            saved, now = _flat(read_json(path)), _flat(json.loads(json.dumps(settings)))  # compared as stored
            if saved != now:
                changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
                raise ValueError(
                    f"The checkpoint folder {directory!r} holds an interrupted run with other settings "
                    f"({', '.join(f'{k}: {saved.get(k)!r} then, {now.get(k)!r} now' for k in changed)}). "
                    "Run the same command again to resume it, or delete the folder (or pass another) to start over."
                )
        elif writer:
            write_json(path, settings)

    def backup(self, phase: int | str, initial_epoch: int) -> PhaseBackup:
        return PhaseBackup(os.path.join(self.directory, f"phase{phase}"), initial_epoch, self.writer)

    def finished(self, phase: int | str) -> dict | None:
        """The record of a finished phase (`epochs`, `history`), or None."""
        path = os.path.join(self.directory, f"phase{phase}.json")
        return read_json(path) if os.path.exists(path) else None

    def finish(self, phase: int | str, model: keras.Model, epochs: int, history: dict, best: dict | None = None) -> None:
        """Records a finished phase: all of `model`'s variables, then its history and best epoch
        (the marker)."""
        values = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}  # all workers read
        if not self.writer:
            return
        atomic_write(os.path.join(self.directory, f"phase{phase}.npz"), lambda f: np.savez(f, **values))
        write_json(os.path.join(self.directory, f"phase{phase}.json"), {"epochs": epochs, "history": history, "best": best or {}})
        shutil.rmtree(os.path.join(self.directory, f"phase{phase}"), ignore_errors=True)  # superseded

    def restore(self, phase: int | str, model: keras.Model) -> None:
        with np.load(os.path.join(self.directory, f"phase{phase}.npz")) as saved:
            if len(saved.files) != len(model.variables):
                raise ValueError(f"The checkpoint in {self.directory!r} does not fit this model: delete it to start over.")
            for i, variable in enumerate(model.variables):
                variable.assign(saved[f"v{i}"])
