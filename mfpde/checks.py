"""Checked primitives for user-supplied values (shared by every room).

A value read from TOML, a command line or a Python argument may be of any type: a list or
a table where a name is expected makes ``value in ALLOWED``, ``table[value]`` or
``set(values)`` raise ``TypeError: unhashable type``.  Every membership test, lookup or set
of a user-supplied value goes through :func:`choice`, :func:`lookup` or :func:`distinct`,
which turn a wrong type into a :class:`~mfpde.errors.ConfigError` naming the key.  The
table/number/string readers of the TOML validators live here too.  Imports only
:mod:`mfpde.errors`.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from mfpde.errors import ConfigError


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _names(allowed) -> str:
    return ", ".join(str(a) for a in allowed)


def choice(value, allowed: Iterable, key: str, *, what: str = "value") -> Any:
    """``value`` if it is one of ``allowed`` (compared by type and value), else ConfigError.

    ``True`` is not accepted for ``1`` and ``1.0`` is not accepted for ``1`` : the type must
    match an allowed entry exactly (TOML has distinct booleans, integers and floats).
    """
    allowed = tuple(allowed)
    if _hashable(value):
        for a in allowed:
            if type(a) is type(value) and a == value:
                return value
    raise ConfigError(key, f"unknown {what} {value!r}; allowed: {_names(allowed)}")


def is_one_of(value, allowed: Iterable) -> bool:
    """Whether ``value`` is one of ``allowed`` (same type and value); never raises."""
    if not _hashable(value):
        return False
    return any(type(a) is type(value) and a == value for a in allowed)


def lookup(mapping: Mapping, value, key: str, *, what: str = "value") -> Any:
    """``mapping[value]`` for a user-supplied ``value``; ConfigError if absent or unhashable."""
    return mapping[choice(value, tuple(mapping), key, what=what)]


def distinct(values: Iterable, key: str) -> set:
    """``set(values)`` of user-supplied values; ConfigError if one is unhashable."""
    out = set()
    for v in values:
        if not _hashable(v):
            raise ConfigError(key, f"expected a list of numbers or names, got an entry {v!r}")
        out.add(v)
    return out


def table(v, key: str) -> Mapping:
    """``v`` if it is a table (mapping), else ConfigError."""
    if not isinstance(v, Mapping):
        raise ConfigError(key, f"expected a table, got {type(v).__name__}")
    return v


def check_keys(t: Mapping, allowed, key: str) -> None:
    """ConfigError naming the first key of ``t`` that is not in ``allowed``."""
    allowed = tuple(allowed)
    for k in t:
        if not is_one_of(k, allowed):
            where = f"{key}.{k}" if key else (str(k) or repr(k))
            raise ConfigError(where, f"unknown key; allowed in [{key or 'top level'}]: {_names(allowed)}")


def integer(v, key: str, lo: int = 1, hi: int | None = None) -> int:
    """An integer (not a bool) in [lo, hi]."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(key, f"expected an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        raise ConfigError(key, f"must be between {lo} and {hi}, got {v}" if hi is not None else f"must be >= {lo}, got {v}")
    return v


def number(v, key: str, positive: bool = False) -> float:
    """A finite number (not a bool); > 0 if ``positive``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(key, f"expected a finite number, got {v!r}")
    if positive and v <= 0:
        raise ConfigError(key, f"must be > 0, got {v!r}")
    return float(v)


def boolean(v, key: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {v!r}")
    return v


def string(v, key: str, allowed=None) -> str:
    """A string; one of ``allowed`` if given."""
    if not isinstance(v, str):
        raise ConfigError(key, f"expected a string, got {v!r}")
    if allowed is not None:
        choice(v, allowed, key)
    return v


MAX_DEPTH = 16   # nesting of tables and arrays in a TOML file (mfpde's deepest use is 5)


def parse_toml(text: str, source: str) -> dict:
    """``tomllib.loads`` with one-line errors: invalid TOML, or nesting deeper than MAX_DEPTH.

    tomllib recurses once per nesting level, so hundreds of ``[[[…]]]`` would raise a
    RecursionError with thousands of lines of traceback; the depth is checked on the text
    first (brackets and braces outside strings bound it from above) and on the result.
    """
    import tomllib

    if _bracket_depth(text) > 4 * MAX_DEPTH:
        raise ConfigError("", f"{source}: tables or arrays nested more than {MAX_DEPTH} levels deep")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError("", f"{source}: tables or arrays nested more than {MAX_DEPTH} levels deep") from None
    check_depth(raw, source)
    return raw


def _bracket_depth(text: str) -> int:
    """An upper bound of the nesting depth of inline arrays/tables (brackets, ignoring strings roughly)."""
    depth = best = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return best


def check_depth(raw, source: str, max_depth: int = MAX_DEPTH) -> None:
    """ConfigError if tables/lists in ``raw`` nest deeper than ``max_depth`` (checked iteratively)."""
    stack = [(raw, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, Mapping):
            children = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        if d > max_depth:
            raise ConfigError("", f"{source}: tables or arrays nested more than {max_depth} levels deep")
        stack.extend((x, d + 1) for x in children)


def to_toml(raw: Mapping) -> str:
    """A configuration table as TOML text (numpy scalars and arrays as plain numbers and lists)."""
    import tomli_w

    return tomli_w.dumps(_plain(raw))


def _plain(v):
    import numpy as np

    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v
