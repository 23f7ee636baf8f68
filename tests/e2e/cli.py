"""The `tollgate` CLI as the end-to-end tests run it: the console script of this interpreter's environment,
pointed at the local stack, with `--json` output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def tollgate(local_stack, *args: str) -> Any:
    """Run `tollgate ARGS --json` against `local_stack` (tests.e2e.conftest's LocalStack); the parsed JSON.
    Fails the test when the command exits non-zero (its stderr is the message)."""
    done = subprocess.run([str(Path(sys.executable).parent / "tollgate"), *args, "--json"], env=local_stack.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
