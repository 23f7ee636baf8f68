"""The CLI's own errors: each one ends the command with a one-line message and an exit code."""
from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report in one line (exit code 1)."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    """The command was called wrongly (exit code 2, printed with the command's usage line)."""

    exit_code = EXIT_USAGE


class ApiError(CliError):
    """The gateway answered with an error (4xx/5xx)."""

    def __init__(self, message: str, *, status: int, type: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code


class InputError(CliError):
    """A value the CLI refuses before sending anything (exit code 2, one line, no usage line): e.g. a key
    that cannot be sent in an HTTP header."""

    exit_code = EXIT_USAGE
