"""Exceptions with a meaning for the command line (exit codes) and for Python callers."""

from __future__ import annotations


class AutoMLError(Exception):
    """Base class of the errors automl-meta raises on purpose."""

    exit_code = 3


class UsageError(AutoMLError, ValueError):
    """Bad input or bad arguments: the user can fix it. Exit code 2 on the command line."""

    exit_code = 2


class MetabaseError(AutoMLError):
    """A metabase is missing, corrupt or was built against another search space."""

    exit_code = 2


class ModelIntegrityError(AutoMLError):
    """A run directory's model file does not match its manifest."""

    exit_code = 2


class HistoryError(AutoMLError):
    """A history cannot be used: truncated, not a history, or another format version."""

    exit_code = 2
