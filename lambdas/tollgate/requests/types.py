"""Field types shared by the request schemas: ids, money, counts. Each refuses what DynamoDB, Decimal
or a provider would refuse later with a 500.

Sources: DynamoDB limits a partition key to 2,048 bytes and a number to 38 significant digits
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

from tollgate.auth.api_keys import is_whole_secret
from tollgate.plain_numbers import is_plain_decimal

# Longest id (user, service, key id, key name, run id) in characters: 4 UTF-8 bytes each at most, so
# an id and its table prefix stay far below DynamoDB's 2,048-byte key limit.
MAX_ID_CHARS = 256
# Largest money amount accepted anywhere (a budget or limit), in USD, and its finest step: 12 decimal
# places keep any amount within 19 significant digits (DynamoDB stores 38).
MAX_USD = Decimal(1_000_000)
USD_PLACES = 12
# Largest token count or choice count a body may ask for; a provider's own limits are far lower.
MAX_TOKENS = 2**31 - 1
MAX_CHOICES = 128  # OpenAI's documented maximum for `n`
MAX_EMBEDDING_DIMENSIONS = 65_536  # far above any embedding model's (text-embedding-3-large: 3,072)


def is_id(text: str) -> bool:
    """A usable id: 1 to MAX_ID_CHARS printable characters (no control characters, no U+FFFD that stands
    for undecodable bytes), encodable as UTF-8."""
    if not 1 <= len(text) <= MAX_ID_CHARS or not text.isprintable() or "\ufffd" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _id(text: str) -> str:
    if not is_id(text):
        raise PydanticCustomError(
            "invalid_id", "must be 1 to {max} printable characters (no control characters)", {"max": MAX_ID_CHARS})
    return text


def _key_id(text: str) -> str:
    if is_whole_secret(text):
        raise PydanticCustomError("whole_secret_key", "that is a whole secret API key, not its id; use the id "
                                  "shown by `tollgate keys list`")
    return text


def _decimal(value: Any, not_a_number: PydanticCustomError) -> Decimal:
    """A JSON number, or a string in plain ASCII decimal notation (tollgate.plain_numbers: no underscores,
    Unicode digits, spaces, signs or exponents), as an exact Decimal. A JSON number arrives as a double:
    its repr is the shortest decimal literal that round-trips, which is the literal the client sent
    whenever it has at most 15 significant digits; no float arithmetic happens. Clients needing more
    digits send a string. Raises `not_a_number` for anything else."""
    if isinstance(value, str):
        if not is_plain_decimal(value):
            raise not_a_number
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise not_a_number
    try:
        return Decimal(repr(value) if isinstance(value, float) else str(value))
    except (InvalidOperation, ValueError):
        raise not_a_number from None


def _usd(value: Any) -> Decimal:
    """An amount in USD, 0 to MAX_USD with at most USD_PLACES decimal places (see _decimal)."""
    amount = _decimal(value, PydanticCustomError(
        "usd_type", "must be a decimal amount in USD: a number, or a string of plain digits with an optional "
        "point such as \"10\" or \"1.50\" (no underscores, spaces, signs, exponents or non-ASCII digits)"))
    if not amount.is_finite() or not 0 <= amount <= MAX_USD:
        raise PydanticCustomError("usd_range", "must be between 0 and {max} USD", {"max": str(MAX_USD)})
    if amount.as_tuple().exponent < -USD_PLACES and amount != amount.quantize(Decimal(1).scaleb(-USD_PLACES)):
        raise PydanticCustomError("usd_places", "may have at most {places} decimal places", {"places": USD_PLACES})
    return amount


def _day(text: str) -> str:
    """A calendar day, YYYY-MM-DD in ASCII digits, that exists (not 2026-13-01 or 2026-02-30)."""
    from datetime import date

    try:
        if len(text) == 10 and text.isascii():
            date.fromisoformat(text)
            return text
    except ValueError:
        pass
    raise PydanticCustomError("day", "must be a calendar day as YYYY-MM-DD, e.g. 2026-01-31")


def _percent(value: Any) -> Decimal:
    """A percentage, 0 to 100 (e.g. an invoice's markup), given as for _decimal."""
    amount = _decimal(value, PydanticCustomError("percent", "must be a percentage from 0 to 100"))
    if not amount.is_finite() or not 0 <= amount <= 100 or amount.as_tuple().exponent < -USD_PLACES:
        raise PydanticCustomError("percent", "must be a percentage from 0 to 100")
    return amount


Id = Annotated[str, Strict(), AfterValidator(_id)]
KeyId = Annotated[str, Strict(), AfterValidator(_id), AfterValidator(_key_id)]  # never a whole secret key
Day = Annotated[str, Strict(), AfterValidator(_day)]
Percent = Annotated[Decimal, BeforeValidator(_percent)]
Usd = Annotated[Decimal, BeforeValidator(_usd)]
StrictBool = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
Name = Annotated[str, Strict(), Field(min_length=1, max_length=MAX_ID_CHARS)]
Count = Annotated[int, Strict(), Field(ge=1, le=MAX_TOKENS)]  # a positive integer, never a boolean
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # an int or a float, never a boolean
JsonObject = dict[str, Any]
