"""The CLI's argument parser: no abbreviated options, no secret repeated in its error messages, and
options that would take a secret from the command line refused by name."""
from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn, Sequence

from tollgate_cli.redaction import redact

_NEGATIVE = re.compile(r"^-[0-9]")  # "-1h": a (refused) value, not an option; no option starts with a digit


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser with allow_abbrev=False (`--provider-key` is not `--provider-key-file`),
    whose error messages have every secret-looking word redacted (argparse repeats the arguments it could
    not use: `unrecognized arguments: --provider-key sk-...`). Subparsers made by add_subparsers are of
    this class too."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print the usage and `message` without secrets on standard error; exit with code 2."""
        super().error(redact(message))

    def _parse_optional(self, arg_string: str) -> Any:
        # argparse takes "-1h" for an unknown option and reports "expected one argument"; as a value,
        # the option's type says what is wrong with it (a negative duration).
        if _NEGATIVE.match(arg_string):
            return None
        return super()._parse_optional(arg_string)


class _Refuse(argparse.Action):
    """An option that is never valid: using it ends the command with `help` as the error, its value unread."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string}: {self.help_text}")

    help_text = ""


def refuse(parser: argparse.ArgumentParser, names: Sequence[str], message: str) -> None:
    """Make the options `names` (e.g. --provider-key) a usage error saying `message`, hidden from --help.
    They take an optional value so that the value, usually a secret, is consumed and never repeated."""
    action = type("Refuse", (_Refuse,), {"help_text": message})
    parser.add_argument(*names, nargs="?", action=action, help=argparse.SUPPRESS, dest=argparse.SUPPRESS)
