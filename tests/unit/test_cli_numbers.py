"""The CLI's number options take only plain ASCII decimal notation (tollgate.plain_numbers, the gateway's
own test), and a percentage is described as a percentage."""
from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_cli import api, clean_env, cli  # noqa: F401 - fixtures
from tollgate_cli import parsing

_NOT_ASCII_DIGITS = st.text(st.characters(categories=["Nd"]).filter(lambda c: not c.isascii()), min_size=1, max_size=3)


@given(digits=_NOT_ASCII_DIGITS)
def test_unicode_digits_are_refused_by_every_number_option(digits):
    for parse in (parsing.usd, parsing.positive_int, parsing.positive_float, parsing.percent, parsing.duration):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(digits + ("d" if parse is parsing.duration else ""))


@pytest.mark.parametrize("text", ["1_0", "+10", "1e1", "0x10", "-5"])
def test_underscores_signs_and_exponents_are_refused(text):
    for parse in (parsing.usd, parsing.positive_int, parsing.positive_float, parsing.percent):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_markup_pct_is_described_as_a_percentage(api, cli):  # noqa: F811
    code, _, err = cli("invoice", "--month", "2026-11", "--markup-pct", "-5")
    assert code == 2 and not api.requests
    assert "a percentage from 0 to 100" in err and "dollars" not in err


def test_a_percentage_is_passed_on_as_plain_decimal_text():
    assert parsing.percent("2.5") == "2.5" and parsing.percent("100%") == "100"
    with pytest.raises(argparse.ArgumentTypeError):
        parsing.percent("100.01")
