"""One family of exceptions: the CLI prints their message as one line and exits non-zero."""


class CfsxError(Exception):
    """Base class of every error cfsx reports to its user."""

    exit_code = 1


class ConfigError(CfsxError):
    """A configuration value, override or option is invalid."""

    exit_code = 2


class DataError(CfsxError):
    """An input file is missing, corrupt, of the wrong format, or does not match."""

    exit_code = 3


class EngineError(CfsxError):
    """The physics engine was given inputs it cannot work with."""

    exit_code = 4


class ClusterError(CfsxError):
    """A compute cluster (Dask scheduler, TensorFlow workers) cannot be reached or used."""

    exit_code = 6
