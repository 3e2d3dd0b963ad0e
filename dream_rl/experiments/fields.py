"""The value types of config fields, and :class:`Section`, the base of every config section.

Types are strict (``"3"`` is not an integer, ``1`` is not ``true``), with one leniency: an integer
field accepts a float with an integral value (``1e5``, which YAML reads as a float). A problem is a
:class:`~dream_rl.experiments.problems.Problem`, worded by :mod:`.problems`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from dream_rl.experiments.problems import Problem, describe

__all__ = [
    "Bool",
    "Count",
    "Device",
    "FolderName",
    "Fraction",
    "Int",
    "Kwargs",
    "NonNegative",
    "Number",
    "Positive",
    "Section",
    "Seed",
    "Text",
    "safe_name",
    "string_keys",
]


def _integral(value: Any) -> Any:
    """1e5 (read as a float) is fine where an integer is expected."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def safe_name(value: str) -> str:
    """``value`` if it can name a folder (letters, digits, '_', '-', '.'; not . or ..), else a Problem."""
    if not _SAFE_NAME.match(value) or value in (".", ".."):
        raise Problem((), f"{value!r} is used as a folder name: use letters, digits, '_', '-', '.'")
    return value


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


def string_keys(value: Any) -> Any:
    """``value``, after checking that a mapping's keys are strings."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise Problem((), f"keys must be strings, got {key!r}")
    return value


def _device(value: str) -> str:
    if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", value):
        raise Problem((), f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


Int = Annotated[int, Strict(), BeforeValidator(_integral)]
Count = Annotated[Int, Field(ge=1)]
Seed = Annotated[Int, Field(ge=0)]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]
FolderName = Annotated[Text, AfterValidator(safe_name)]
Kwargs = Annotated[dict[str, Any], Strict(), BeforeValidator(string_keys), BeforeValidator(_none_is_empty)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Positive = Annotated[Number, Field(gt=0)]
NonNegative = Annotated[Number, Field(ge=0)]
Fraction = Annotated[Number, Field(ge=0, le=1)]
Device = Annotated[Text, AfterValidator(_device)]


class Section(BaseModel):
    """A config section: unknown keys are an error naming the nearest valid key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise Problem((), f"expected a mapping (key: value, ...), got {describe(data)}")
        string_keys(data)
        for key in data:
            if key not in cls.model_fields:
                raise Problem((key,), "", valid=cls.model_fields)
        for name, field in cls.model_fields.items():
            if field.is_required() and name not in data:
                raise Problem((name,), "missing")
        return data
