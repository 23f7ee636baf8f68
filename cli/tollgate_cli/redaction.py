"""Secrets the user typed by mistake: recognising them so no message repeats them, and checking a
credential before it goes into an HTTP header.

A credential that cannot be sent (a Unicode character such as the README placeholder's `…`, a control
character, a space) is refused with its position and the character's name, never with the value.
"""
from __future__ import annotations

import re
import unicodedata

from tollgate_cli.errors import InputError

REDACTED = "[redacted]"
_RANDOM = re.compile(r"[A-Za-z0-9_\-+/=]+")  # what API keys, tokens and base64 secrets are made of
_TOKEN = re.compile(r"[^\s'\",=]+")  # a word of a message; `--opt=value` is split at the `=`


def looks_secret(text: str) -> bool:
    """True when `text` looks like a credential rather than a name, id or path: `sk-` and more
    (Tollgate's, OpenAI's and Anthropic's keys), `Bearer ` and more, `eyJ` (a JWT), or 20+ characters of
    letters, digits and `_-+/=` with a run of 16+ (between `-`, `_`, `.`) mixing two of upper case, lower
    case and digits (a key without its prefix, an AWS secret; not a model id such as
    claude-sonnet-4-5-20250929). A value starting like a path (`/`, `.`, `~`) is taken for one unless it
    has a key prefix."""
    value = text.strip()
    if re.match(r"(?i)(sk-|bearer\s+)\S", value) or value.startswith("eyJ"):
        return True
    if value[:1] in ("/", ".", "~") or len(value) < 20 or not _RANDOM.fullmatch(value):
        return False
    classes = (str.isupper, str.islower, str.isdigit)
    return any(len(run) >= 16 and sum(any(test(c) for c in run) for test in classes) >= 2
               for run in re.split(r"[-_.]", value))


def redact(text: str) -> str:
    """`text` with every word that looks_secret replaced by REDACTED (for argparse's messages, which
    repeat the arguments they could not use)."""
    text = re.sub(r"(?i)\bbearer\s+[\w.~+/=-]+", REDACTED, text)
    return _TOKEN.sub(lambda m: REDACTED if looks_secret(m.group()) else m.group(), text)


def shown(value: str) -> str:
    """`value` (e.g. a file name) as given, for a message, or a note in its place if it looks_secret."""
    return "(a value that looks like a secret, not a file name: not repeated)" if looks_secret(value) else value


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    if not name or unicodedata.category(char).startswith("C"):
        name = "a control character" if unicodedata.category(char) == "Cc" else (name or "unnamed")
        return f"{ascii(char)} (U+{ord(char):04X}, {name})"
    return f"{char!r} (U+{ord(char):04X} {name})"


def _bad_char(value: str, start: int = 0, *, ascii_only: bool = True) -> tuple[int, str] | None:
    """The 1-based position and the first character of value[start:] that cannot go in an HTTP request
    line or header: a control character, a space, or (if `ascii_only`) any non-ASCII character."""
    for index in range(start, len(value)):
        char = value[index]
        if char.isspace() or unicodedata.category(char) == "Cc" or (ascii_only and char > "\x7e"):
            return index + 1, char
    return None


def check_credential(value: str, source: str) -> str:
    """`value` (an API key or token from `source`, e.g. "--admin-key" or a file's path) if it can go in an
    `Authorization` header: printable ASCII without spaces. Otherwise raises InputError (exit code 2)
    naming `source`, the first bad character's 1-based position and Unicode name; never the value."""
    if value.lower().startswith("bearer "):
        raise InputError(f"{source} starts with 'Bearer ': give the key alone (the CLI adds 'Bearer ')")
    bad = _bad_char(value)
    if bad is None:
        return value
    position, char = bad
    if char == "\u2026":
        hint = "paste the whole key, not the README's placeholder"
    elif char.isspace() or unicodedata.category(char) == "Cc":
        hint = "a key has no spaces or line breaks: paste it again, in one piece"
    else:
        hint = "a key is plain ASCII letters and digits: paste it again from where it was shown"
    raise InputError(f"{source} contains {_describe(char)} at position {position}: {hint}")


def check_url(value: str, source: str) -> str:
    """`value`, an http(s) URL from `source`, if it can be sent: no spaces or control characters, and
    nothing but ASCII after the host (an international host name is encoded by the HTTP client).
    Otherwise raises InputError naming `source`, the character and its 1-based position."""
    scheme, sep, rest = value.partition("://")
    host_end = len(scheme) + len(sep) + len(rest.split("/", 1)[0].split("?", 1)[0])
    bad = _bad_char(value[:host_end], ascii_only=False) or _bad_char(value, host_end)
    if bad is None:
        return value
    position, char = bad
    hint = ("a URL has no spaces or line breaks" if char.isspace() or unicodedata.category(char) == "Cc"
            else "write it percent-encoded, or check what was pasted")
    raise InputError(f"{source} contains {_describe(char)} at position {position}: {hint}")
