"""Errors a user can act on. Anything deriving from ``UserError`` becomes one plain line and exit code 2."""

from __future__ import annotations


class PalaestraError(Exception):
    """Base class of every error Palaestra raises on purpose."""


class UserError(PalaestraError):
    """Bad input from the user: config, data, arguments or artifacts. CLI exit code 2, HTTP 4xx."""


class ConfigError(UserError):
    """The config file or an override is invalid."""


class DataError(UserError):
    """The data cannot be read or does not fit the task."""


class ArtifactError(UserError):
    """A run directory or one of its files is missing, truncated or altered."""

