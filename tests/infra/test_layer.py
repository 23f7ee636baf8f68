"""The dependency layer holds Linux AArch64 extension modules built for the functions' runtime.

A layer built for the build machine (x86-64, or another Python) imports fine in tests and fails only
inside Lambda; this reads the ELF headers to catch that before a deploy.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from stacks.functions import LAYER_DIR, RUNTIME

SITE = LAYER_DIR / "python"
EM_AARCH64 = 183
ELFCLASS64 = 2
ELFDATA2LSB = 1
COMPILED_PACKAGES = ("bcrypt", "cryptography", "pydantic_core")


def _elf_header(path: Path) -> tuple[int, int, int]:
    """(EI_CLASS, EI_DATA, e_machine) of an ELF file."""
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    ei_class, ei_data = head[4], head[5]
    byte_order = "<" if ei_data == ELFDATA2LSB else ">"
    # e_ident is 16 bytes, then e_type (2 bytes), then e_machine (2 bytes).
    (e_machine,) = struct.unpack_from(byte_order + "H", head, 18)
    return ei_class, ei_data, e_machine


@pytest.fixture(scope="module")
def site() -> Path:
    if not SITE.is_dir():
        pytest.fail(f"{SITE} is missing: run `make layer`")
    return SITE


@pytest.mark.parametrize("package", COMPILED_PACKAGES)
def test_compiled_extensions_are_linux_aarch64(site, package):
    extensions = sorted((site / package).rglob("*.so"))
    assert extensions, f"no compiled extension found for {package}"
    for so in extensions:
        assert _elf_header(so) == (ELFCLASS64, ELFDATA2LSB, EM_AARCH64), so.relative_to(site)


def test_version_tagged_extensions_match_the_lambda_runtime(site):
    major, minor = re.fullmatch(r"python(\d)\.(\d+)", RUNTIME.name).groups()
    expected = f"cpython-{major}{minor}-aarch64-linux-gnu"
    tags = {m.group(1) for so in site.rglob("*.so") if (m := re.search(r"\.(cpython-[^.]+)\.so$", so.name))}
    assert tags == {expected}, "layer built for another Python: check LAYER_PYTHON in the Makefile"


def test_every_extension_in_the_layer_is_aarch64(site):
    wrong = [str(so.relative_to(site)) for so in site.rglob("*.so") if _elf_header(so)[2] != EM_AARCH64]
    assert wrong == []
