"""Typed errors: raised where a problem is detected, saying what, where and what to do."""

from __future__ import annotations


class RobustmerError(Exception):
    """Base class of every error robustmer raises on purpose."""


class AudioError(RobustmerError):
    """An audio file is missing, undecodable, empty, silent or holds NaN/Inf samples."""


class DatasetError(RobustmerError):
    """A dataset folder or annotation file is malformed (names file and row)."""


class ConfigError(RobustmerError):
    """A configuration value or CLI parameter is invalid (names the parameter)."""


class CheckpointError(RobustmerError):
    """A checkpoint or run folder is missing, incomplete or incompatible."""


class AttackError(RobustmerError):
    """An attack cannot run as asked (e.g. it cannot leave its start: zero gradient)."""


class DatasetWarning(UserWarning):
    """A dataset is usable but a result from it needs care (constant target, tiny split)."""
