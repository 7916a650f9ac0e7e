"""What `fine_tune` returns: both phases' merged Keras history, their epochs, the blocks phase 2
trained, its learning rates, its boundary cache and depth search, and the best epochs each phase
ended with. Phases are numbered 1 (the head) and 2 (the top blocks), as everywhere in tl_keras."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class FineTuneHistory:
    """Both phases' metrics in one history, epoch by epoch.

    Attributes:
        history: metric name -> one value per epoch, phase 1 then phase 2 (Keras `History` style).
        head_epochs: epochs run in phase 1 (fewer than asked if early stopping ended it).
        fine_tune_epochs: epochs run in phase 2.
        unfrozen_blocks: names of the blocks trained in phase 2.
        learning_rates: the phase 1 and phase 2 learning rates.
        boundary_cache: how phase 2 ran: `{"used": True, "views", "computed", "seconds", "megabytes",
            ...}` when it trained on cached boundary activations, else `{"used": False, "reason"}`.
        best_epochs: per phase, the epoch (index into `history`) whose weights the phase ended with
            (see `BestEpoch`); None where the phase kept its last weights, or phase 2 kept none of
            its epochs (it never beat the head's best `val_loss`, so the model is the head's).
        depth_search: for a depth search (`unfreeze_blocks="search"` or several counts), one record
            per depth tried: `unfreeze_blocks`, `epochs`, `val_loss` and `val_accuracy` at its
            lowest-`val_loss` epoch, `beat_head`, `chosen`, `seconds`, `boundary_cache`; else None.
            The other attributes describe the chosen depth.
        head_start: how phase 1's head started (`tl_keras.training.head_init.start_head`): `chosen`,
            `reason` and, for a ridge start, `penalty`, `loo_accuracy`, `temperature`, `rows`; None
            without phase 1.
    """

    history: dict[str, list[float]]
    head_epochs: int
    fine_tune_epochs: int
    unfrozen_blocks: list[str]
    learning_rates: tuple[float, float]
    boundary_cache: dict | None = None
    best_epochs: list[int | None] = dataclasses.field(default_factory=lambda: [None, None])
    depth_search: list[dict] | None = None
    head_start: dict | None = None

    @property
    def epoch(self) -> list[int]:
        return list(range(self.head_epochs + self.fine_tune_epochs))

    @property
    def fine_tune_kept(self) -> bool | None:
        """Whether the model ends with phase 2's weights: None if phase 2 did not run or was not
        judged (no validation data, `restore_best=False`), False if no phase-2 epoch beat the head."""
        if not self.fine_tune_epochs or self.best_epochs[0] is None and self.best_epochs[1] is None:
            return None
        return self.best_epochs[1] is not None

    def final(self, metric: str, phase: int | None = None) -> float | None:
        """`metric` of the weights the model ends with (`phase=1`: ended phase 1 with): the best kept
        epoch's, else the last epoch's."""
        values = self.history.get(metric, [])
        if phase == 1:
            epoch = self.best_epochs[0] if self.best_epochs[0] is not None else self.head_epochs - 1
        else:
            kept = [e for e in self.best_epochs if e is not None]
            if self.fine_tune_kept is False:
                kept = kept[:1]
            epoch = kept[-1] if kept else len(values) - 1
        return float(values[epoch]) if values and epoch >= 0 else None

    def last(self, metric: str, phase: int | None = None) -> float | None:
        """The last value of `metric` overall, or at the end of phase 1 or 2."""
        values = self.history.get(metric, [])
        if phase == 1:
            values = values[: self.head_epochs]
        elif phase == 2:
            values = values[self.head_epochs:]
        return float(values[-1]) if values else None
