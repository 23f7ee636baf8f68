"""How to type this program again, for the follow-up commands the CLI suggests ("Follow it: ... runs show
RUN_ID"). A bare `tollgate` only works when the virtualenv is activated, so a suggestion repeats what
was typed: `.venv/bin/tollgate` when run by that path, `tollgate` when found on PATH."""
from __future__ import annotations

import os
import shlex
import shutil
import sys

NAME = "tollgate"


def command(argv0: str | None = None) -> str:
    """The command to type to run this CLI again, derived from `argv0` (default sys.argv[0]): `tollgate`
    if the name alone finds this program on PATH (or was typed alone); the path as typed (shell-quoted) if
    it was run by a path; `python -m tollgate_cli.main` if it was run as a module; `tollgate` otherwise
    (e.g. under a test runner)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    base = os.path.basename(argv0)
    if base in ("main.py", "__main__.py") and os.path.basename(os.path.dirname(argv0)) == "tollgate_cli":
        return f"{shlex.quote(_short_path(sys.executable))} -m tollgate_cli.main"
    if base != NAME or os.sep not in argv0:
        return NAME
    found = shutil.which(NAME)
    try:
        if found and os.path.samefile(found, argv0):
            return NAME
    except OSError:
        pass
    return shlex.quote(argv0)


def _short_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it (e.g. .venv/bin/python)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return relative if not relative.startswith("..") else path
