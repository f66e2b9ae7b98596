"""One family of exceptions: the CLI prints their message as one line and exits with their code.

The exit codes are a contract for scripts and batch systems (README, "Exit codes"):
0 ok, 1 internal error, 2 usage error (Click), 3 bad input, 4 output problem,
5 interrupted and resumable, 6 cluster unreachable, 7 an image not explained (``interpret --strict``),
130 interrupted by Ctrl-C (SIGINT).
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2  # Click's own code for a wrong command line
EXIT_BAD_INPUT = 3
EXIT_OUTPUT = 4
EXIT_RESUMABLE = 5
EXIT_CLUSTER = 6
EXIT_NOT_EXPLAINED = 7  # interpret --strict: the results are written, but some image is not explained
EXIT_SIGINT = 130


class CfsxError(Exception):
    """Base class of every error cfsx reports to its user."""

    exit_code = EXIT_INTERNAL


class ConfigError(CfsxError):
    """A configuration value, override or option is invalid."""

    exit_code = EXIT_BAD_INPUT


class MissingDependencyError(ConfigError):
    """An optional package this command needs is not installed (the message names the extra to install)."""


class DataError(CfsxError):
    """An input file is missing, corrupt, of the wrong format, or does not match."""

    exit_code = EXIT_BAD_INPUT


class TooLargeError(DataError):
    """An input is larger than the limit set for it (the server's pixel cap: an HTTP 413)."""


class EngineError(CfsxError):
    """The physics engine was given inputs it cannot work with."""

    exit_code = EXIT_BAD_INPUT


class OutputError(CfsxError):
    """An output cannot be written: it exists as something else, is an input, is locked, or the disk is full."""

    exit_code = EXIT_OUTPUT


class ClusterError(CfsxError):
    """A compute cluster (Dask scheduler, TensorFlow workers) cannot be reached or used."""

    exit_code = EXIT_CLUSTER


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time limit): stops work like Ctrl-C, keeping what is finished."""


class AdvisedError(DataError):
    """A refusal that suggests settings. The message names each setting by its config key (what the library,
    the API and the server take); the command line shows its flag instead (``text(flags)``).

    ``message`` holds one ``{advice}`` placeholder; ``advice`` is a list of (key, value as the config takes it,
    value as the flag takes it, note).
    """

    def __init__(self, message: str, advice: list[tuple[str, str, str, str]]) -> None:
        self.template, self.advice = message, advice
        super().__init__(self.text())

    def text(self, flags: dict[str, str] | None = None) -> str:
        """The message, with the settings named by their flags where ``flags`` (config key -> flag) has one."""
        flags = flags or {}
        parts = []
        for key, value, flag_value, note in self.advice:
            if key in flags:
                setting = f"{flags[key]} {flag_value}".rstrip()
            else:  # a config key and its value, or (keys "spec.*") the image spec's own syntax
                setting = value if key.startswith("spec.") else f"{key} = {value}"
            parts.append(f"{setting}{f' ({note})' if note else ''}")
        joined = " and ".join(parts) if self.template.rstrip().endswith("give {advice}") else ", or ".join(parts)
        return self.template.format(advice=joined)
