"""One-line error messages out of what the config validators find.

A validator raises :class:`Problem` (a ``ValueError`` that pydantic carries to the top) with the path
below the value it checks; :func:`from_validation_error` turns the first error of a pydantic
``ValidationError`` into a :class:`~dream_rl.errors.ConfigError` that names the full dotted key, in
dream-rl's wording (:data:`MESSAGES`), and for an unknown key or name the nearest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from dream_rl.errors import ConfigError

__all__ = [
    "MESSAGES",
    "Problem",
    "checked",
    "config_error",
    "describe",
    "dotted",
    "first_difference",
    "first_problem",
    "from_validation_error",
    "located",
    "nearest",
]

T = TypeVar("T")


class Problem(ValueError):
    """A problem at ``path`` below the value being validated (pydantic adds where that value is).

    ``valid`` keys make the message "unknown key '<path>' (did you mean ...)"; the message ``missing``
    makes it "missing required key '<path>'".
    """

    def __init__(
        self, path: tuple[Any, ...], message: str, suggestion: str | None = None, valid: Iterable[str] | None = None
    ) -> None:
        super().__init__(message)
        self.path, self.message, self.suggestion = tuple(path), message, suggestion
        self.valid = list(valid) if valid is not None else None


def dotted(path: Iterable[Any]) -> str:
    """``train.seeds``; a key that would break the one-line message is shown as its repr."""
    return ".".join(str(part) if str(part).isprintable() else repr(part) for part in path)


def describe(value: Any) -> str:
    """A value as a message shows it: its repr (cut at 60 characters) and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def nearest(word: Any, candidates: Iterable[Any]) -> str | None:
    """The candidate closest to ``word`` (case-insensitively), or None if none is close."""
    by_lower = {str(c).lower(): str(c) for c in candidates}
    matches = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def config_error(path: tuple[Any, ...], problem: Problem) -> ConfigError:
    """The one-line ConfigError of ``problem`` found at ``path``."""
    key = dotted(path)
    if problem.valid is not None:  # an unknown key
        near = nearest(path[-1], problem.valid)
        parent = dotted(path[:-1])
        if near is not None:
            hint = f"did you mean '{parent + '.' if parent else ''}{near}'?"
        else:
            hint = f"valid keys: {', '.join(problem.valid)}" if problem.valid else "no keys are allowed here"
        return ConfigError(f"unknown key '{key}' ({hint})", key, near)
    if problem.message == "missing":
        return ConfigError(f"missing required key '{key}'", key)
    return ConfigError(f"{key}: {problem.message}" if key else problem.message, key, problem.suggestion)


# pydantic error types -> dream-rl's wording (ctx values fill the braces)
MESSAGES = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "string_too_short": "expected a non-empty string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value, ...)",
    "model_type": "expected a mapping (key: value, ...)",
    "model_attributes_type": "expected a mapping (key: value, ...)",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "none_required": "expected null",
}


def first_problem(error: ValidationError) -> tuple[tuple[Any, ...], Problem]:
    """The full path and the problem of the first error of a pydantic ValidationError."""
    first = error.errors(include_url=False)[0]
    path = tuple(first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, Problem):
        return path + cause.path, cause
    if isinstance(cause, ValidationError):
        inner_path, problem = first_problem(cause)
        return path + inner_path, problem
    kind = first["type"]
    if kind == "missing":
        return path, Problem((), "missing")
    if kind == "extra_forbidden":
        return path, Problem((), "", valid=[])
    wording = MESSAGES.get(kind)
    message = wording.format(**(first.get("ctx") or {})) if wording else first["msg"]
    return path, Problem((), f"{message}, got {describe(first['input'])}" if "input" in first else message)


def from_validation_error(error: ValidationError, prefix: tuple[Any, ...] = ()) -> ConfigError:
    """The first error of a pydantic ValidationError as a one-line ConfigError (keys below ``prefix``)."""
    path, problem = first_problem(error)
    return config_error(prefix + path, problem)


def checked(annotation: Any, value: Any, path: tuple[Any, ...]) -> Any:
    """``value`` validated against a type annotation; a problem is reported at ``path``."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as error:
        inner_path, problem = first_problem(error)
        raise Problem(path + inner_path, problem.message, problem.suggestion, problem.valid) from None


def located(check: Callable[[], T], path: tuple[Any, ...]) -> T:
    """Run ``check``; a Problem it raises is moved below ``path``."""
    try:
        return check()
    except Problem as problem:
        raise Problem(path + problem.path, problem.message, problem.suggestion, problem.valid) from None


def first_difference(old: Any, new: Any, key: str, then: str = "in the run") -> str | None:
    """The first key path at which two config values differ, worded "<key>: <old> <then>, <new> now"
    (mappings and equal-length lists are compared item by item), or None when they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in list(old) + [n for n in new if n not in old]:
            found = first_difference(old.get(name), new.get(name), f"{key}.{name}", then)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{key}.{index}", then)
            if found:
                return found
        return None
    return None if old == new else f"{key}: {old!r} {then}, {new!r} now"
