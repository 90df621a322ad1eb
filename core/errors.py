"""Project exceptions, shared by every package.

They live in core, the lowest layer, so every layer (and a device) raises the same kinds without
importing a layer after it. Messages say what was
expected, what was found, where (file, row) and what to do; the CLI prints them without a traceback.
"""

from __future__ import annotations


class ShopfloorError(Exception):
    """Root of every error the CLI reports as a plain message."""


class ConfigError(ShopfloorError):
    """A setting is missing, unknown or out of range."""


class DataError(ShopfloorError):
    """Input data cannot be used: unreadable, wrong schema, empty."""


class DataCheckFailed(ShopfloorError):
    """An `error`-severity data check failed; the report says which items broke which rule."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class ExportError(ShopfloorError):
    """An exported model failed its own verification (checker, parity, agreement)."""


class RegistryError(ShopfloorError):
    """A model, version or alias is missing, or a promotion rule refuses a move."""


class TrainingError(ShopfloorError):
    """A training process failed: one rank of a multi-process fit, with its own error printed above."""
