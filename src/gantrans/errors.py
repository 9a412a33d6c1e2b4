"""Errors a user can cause: the CLI prints their message as one line and exits non-zero."""


class GantransError(Exception):
    """Base class for user-facing errors (bad config, missing data, bad checkpoint, ...).

    The message must be a single line that says what is wrong and what to do about it.
    """


class ConfigError(GantransError):
    """A config value that is impossible or inconsistent with another."""


class CheckpointError(GantransError):
    """A checkpoint that is missing, truncated, not ours, or does not fit the request."""
