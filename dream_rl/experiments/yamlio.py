"""Reading and writing config YAML: plain values only, within the size a config has.

The loader is PyYAML's ``SafeLoader`` (no ``!!python/...`` tags: a tag is refused with a hint that
classes are given by name), reads ``3e-4`` and ``1e5`` as floats (YAML 1.1 would read them as strings)
and refuses duplicate keys. A document is refused before it can cost much: longer than
:data:`MAX_YAML_CHARS`, nested deeper than :data:`MAX_YAML_DEPTH` levels of ``[``/``{`` (both checked on
the text), recursive, or expanding through aliases to more than :data:`MAX_YAML_VALUES` values (checked
in time linear in the document). Every refusal is a one-line :class:`~dream_rl.errors.ConfigError`.

The dumper writes what the loader reads back as the same value (:func:`dump_yaml`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dream_rl.errors import ConfigError, first_line

__all__ = ["MAX_YAML_CHARS", "MAX_YAML_DEPTH", "MAX_YAML_VALUES", "dump_yaml", "load_yaml_text", "read_yaml"]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 3e-4 as a float and rejects duplicate keys."""


_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789."))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: yaml reports it below
            continue
        if duplicate:
            raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", str(key))
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# A config is small: the resolved leaderboard config holds about 2,000 values. A document whose
# aliases expand to far more (aliases of aliases of aliases: the "billion laughs" document, 400 bytes
# for 9**9 values) would make every later step (overrides, validation, copies) walk that many values.
MAX_YAML_VALUES = 100_000
# PyYAML's scanner takes time quadratic in the depth of nested [ and { (5,000 levels: many seconds),
# and its composer recurses once per level; a config nests a few levels. Checked on the text first.
MAX_YAML_DEPTH = 100
MAX_YAML_CHARS = 1_000_000


def _flow_depth(text: str) -> int:
    """The deepest run of unclosed ``[`` / ``{`` in ``text`` (brackets in strings count too: an upper
    bound of the flow nesting, found in one linear pass)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}" and depth:
            depth -= 1
    return deepest


def load_yaml_text(text: str) -> Any:
    """The value of a YAML document (safe loader: plain values only), refused when it is longer than
    :data:`MAX_YAML_CHARS`, nests deeper than :data:`MAX_YAML_DEPTH`, is recursive or expands to more
    than :data:`MAX_YAML_VALUES` values. A syntax error is PyYAML's ``YAMLError``; the rest ConfigError."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"the YAML is {len(text):,} characters long: a config is a few KB (at most {MAX_YAML_CHARS:,})")
    if _flow_depth(text) > MAX_YAML_DEPTH:
        raise ConfigError(f"the YAML nests more than {MAX_YAML_DEPTH} levels of [ or {{: a config is a few levels deep")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError("the YAML nests too deeply to read: a config is a few levels deep") from None
    except yaml.constructor.ConstructorError as error:
        tag = re.search(r"constructor for the tag '([^']*)'", str(error.problem))
        if tag:
            shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
            raise ConfigError(
                f"YAML tag {shown} is not allowed: a config holds plain values only (numbers, strings, true/false, "
                "null, lists, mappings), and classes are given by name (activation_fn: ReLU)"
            ) from None
        raise
    _check_expansion(data)
    return data


def _check_expansion(value: Any) -> None:
    """Refuse a value that contains itself (``a: &a [*a]``) or whose aliases expand to more than
    MAX_YAML_VALUES values. Each container is visited once (aliases share one object), so this
    takes time linear in the document, however many times its aliases are used."""
    sizes: dict[int, int] = {}  # id -> expanded size of a finished container
    open_ids: set[int] = set()  # containers on the current path
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if children_done:
            open_ids.discard(key)
            size = 1 + sum(sizes.get(id(item), 1) for item in items)
            if size > MAX_YAML_VALUES:
                raise ConfigError(
                    f"the YAML expands to more than {MAX_YAML_VALUES:,} values (aliases of aliases): "
                    "a config is a few hundred values; write it without nested aliases"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_ids:
            raise ConfigError("recursive YAML anchor (a value that contains itself, like `a: &a [*a]`)")
        open_ids.add(key)
        stack.append((node, True))
        for item in items:
            if isinstance(item, (dict, list)):
                if id(item) in open_ids:
                    raise ConfigError("recursive YAML anchor (a value that contains itself, like `a: &a [*a]`)")
                if id(item) not in sizes:
                    stack.append((item, False))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML file (not validated)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a directory, not a config file: give a YAML file (an experiment directory keeps its "
            f"resolved config in {path / 'config.yaml'})"
        )
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file: give a YAML config file")
    try:
        if path.stat().st_size > 4 * MAX_YAML_CHARS:  # refused before it is read into memory
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes: a config is a few KB (at most {MAX_YAML_CHARS:,} characters)")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}): a config is YAML text") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or type(error).__name__})") from None
    try:
        data = load_yaml_text(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or first_line(error)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}", error.key) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (name: ..., env: ..., ...)")
    return data


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists of scalars (seeds: [0, 1], net_arch: [64, 64]);
    quotes the strings that _Loader would read as floats ('1e5')."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789."))

_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=not any(isinstance(item, (dict, list)) for item in data)
    ),
)


def dump_yaml(value: Any, flow: bool = False) -> str:
    """``value`` as YAML that :func:`read_yaml` and overrides read back as the same value."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=flow, allow_unicode=True, width=10**9)
