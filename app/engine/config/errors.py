"""Errors the engine raises. Each names where in the user's input the problem is (`loc`)."""

from __future__ import annotations

from collections.abc import Sequence

Loc = tuple[str | int, ...]


class EngineError(Exception):
    """Base class: a problem with what the caller asked the engine to do."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        self.loc: Loc = tuple(loc)
        self.message = message
        where = ".".join(str(p) for p in self.loc)
        super().__init__(f"{where}: {message}" if where else message)

    def prefixed(self, *prefix: str | int) -> EngineError:
        """The same error with `prefix` put in front of its location."""
        return type(self)((*prefix, *self.loc), self.message)


class ConfigError(EngineError):
    """A model, compile or callback configuration that cannot be honoured."""


class DataError(EngineError):
    """Arrays that do not fit the model, the loss or each other."""


class LearningRateNotSettable(EngineError):
    """A callback changed the learning rate of an optimizer whose rate is a schedule, which
    cannot be set. Keras's fit runs until then and fails at that epoch (a TypeError); this is
    raised at the same point, after the callbacks before this one have had the epoch's logs.
    `epoch` is that epoch (0-based)."""

    def __init__(self, loc: Sequence[str | int], message: str, *, epoch: int = -1) -> None:
        super().__init__(loc, message)
        self.epoch = epoch

    def prefixed(self, *prefix: str | int) -> EngineError:
        return LearningRateNotSettable((*prefix, *self.loc), self.message, epoch=self.epoch)


class TrainingInterrupted(Exception):
    """Raised by a callback to leave fit at once (a lost lease, a cancelled job)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
