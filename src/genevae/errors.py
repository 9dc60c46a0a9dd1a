"""Exceptions raised for bad user input, so callers can tell them from bugs."""


class GenevaeInputError(ValueError):
    """Bad input data, file or parameter; the message names it and says how to fix it."""


class GenevaeConfigError(GenevaeInputError):
    """The configuration of a run failed its checks; raised before any node runs."""
