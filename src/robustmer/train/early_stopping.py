"""Early stopping as a small stateful object (as Lightning's ``EarlyStopping``, mode "max"):
:meth:`EarlyStopping.update` takes each epoch's validation score, :meth:`~EarlyStopping.
state_dict` / :meth:`~EarlyStopping.load_state_dict` put it in and take it out of a checkpoint's
``state.json`` (key ``early_stopping``: ``best_score``, ``best_epoch``, ``bad_epochs``,
``stopped``, the format runs have always recorded, so older runs resume).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class EarlyStopping:
    """Stop after ``patience`` epochs without a new best validation score (higher is better).

    An undefined score (e.g. r over a single validation clip) counts as -inf; the first epoch
    still becomes "best" so that a run always has a best checkpoint.

    Examples:
        >>> es = EarlyStopping(patience=2)
        >>> [es.update(score, epoch) for epoch, score in enumerate([0.1, 0.5, 0.4, 0.3], 1)]
        [True, True, False, False]
        >>> es.state_dict()
        {'best_score': 0.5, 'best_epoch': 2, 'bad_epochs': 2, 'stopped': True}
        >>> EarlyStopping(patience=2).load_state_dict(es.state_dict()).stopped
        True
    """

    def __init__(self, patience: int) -> None:
        self.patience = int(patience)
        self.best_score = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped = False

    def update(self, score: float, epoch: int) -> bool:
        """Take ``epoch``'s validation score; True if it is the new best."""
        improved = score > self.best_score or self.best_epoch == 0
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.bad_epochs >= self.patience
        return bool(improved)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint form: ``{best_score, best_epoch, bad_epochs, stopped}``."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped": self.stopped}

    def load_state_dict(self, state: Mapping[str, Any]) -> EarlyStopping:
        """Restore from :meth:`state_dict` (``patience`` stays this object's: a resumed run may
        change it); returns ``self``."""
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped = bool(state["stopped"])
        return self
