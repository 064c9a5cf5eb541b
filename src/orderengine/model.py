"""The base of every value the engine passes around or puts on the wire.

Values are frozen pydantic models. Amounts and prices are `Decimal`, never binary floats, and
serialise to decimal strings; field names are camelCase on the wire, snake_case in Python.
"""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Immutable, camelCase on the wire, and strict about unknown fields.

    The engine's own code makes models by their Python names; what a client sends is
    validated by its camelCase names alone (`by_name=False`), as the API's schemas say.
    """

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )


EXACT = Context(prec=100)
"""Arithmetic on amounts and prices that must not round: a product of two of them (each at
most 38 digits) has at most 76."""


def plain_decimal(amount: Decimal) -> str:
    """`amount` in positional notation: "0.000000001", never "1E-9" as `str` would write it."""
    return format(amount, "f")


Amount = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=38),
    PlainSerializer(plain_decimal, return_type=str, when_used="json"),
]
"""An exact amount or price: a plain decimal string on the wire, NUMERIC in the database."""


GIVEN_DIGITS = 30
"""The most digits an amount or a price a client gives may have, trailing zeros included."""


def _given_digits(value: Decimal | None) -> Decimal | None:
    if value is not None and len(value.as_tuple().digits) > GIVEN_DIGITS:
        raise ValueError(f"at most {GIVEN_DIGITS} digits, trailing zeros included")
    return value


Given = Annotated[
    Decimal,
    Field(gt=0, allow_inf_nan=False, max_digits=GIVEN_DIGITS),
    AfterValidator(_given_digits),
]
"""A positive amount or price as a client gives it: finite, `GIVEN_DIGITS` digits at most.

pydantic's `max_digits` counts a number's digits without its trailing zeros, which the
number keeps and every answer about it repeats: `0.1` followed by 8000 zeros passed, and
made every event of its order 16 KB."""
