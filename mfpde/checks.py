"""Checked primitives for user-supplied values (shared by every room).

A value read from TOML, a command line or a Python argument may be of any type: a list or
a table where a name is expected makes ``value in ALLOWED``, ``table[value]`` or
``set(values)`` raise ``TypeError: unhashable type``.  Every membership test, lookup or set
of a user-supplied value goes through :func:`choice`, :func:`lookup` or :func:`distinct`,
which turn a wrong type into a :class:`~mfpde.errors.ConfigError` naming the key.  The
readers of the TOML validators live here too — :func:`table`, :func:`check_keys`,
:func:`required`, :func:`get`, :func:`integer`, :func:`number`, :func:`array`,
:func:`boolean`, :func:`string` — and so do the size LIMITS every room checks against.
Imports only :mod:`mfpde.errors` (numpy and tomllib/tomli_w lazily).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping

from mfpde.errors import ConfigError

# ------------------------------------------------------------------------------------- LIMITS
# Every user-facing size limit, in one place (docs/config.md#validation lists them).  Each is
# checked before anything is allocated or read; the modules read them from here at call time.
MAX_DEPTH = 16                   # nesting of tables and arrays in a TOML file (mfpde's deepest use is 5)
MAX_SEED = 2**63 - 1             # seeds (top-level seed, data and rule seeds)
MAX_INPUT_DIM = 1_000_000        # model.input_dim, d
MAX_OUTPUTS = 100_000            # model.outputs, K
MAX_HIDDEN = 64                  # hidden layers, L
MAX_LAYER_NODES = 1_000_000      # nodes of one hidden layer's rule (rules.layer_l, iid rules)
MAX_RULE_NODES = 10_000_000      # nodes of any one rule (data rules; tracers and pre-merge Smolyak nodes included)
MAX_RULE_ENTRIES = 100_000_000   # nodes × dimension of one rule
MAX_NOISE_NODES = 4096           # nodes of a one-dimensional initial-noise rule (rules.omega_l)
MAX_GAUSS_SIZE = 10_000          # 1-D Gauss–Hermite / Gauss–Legendre size, Smolyak level
MAX_GRID_DIM = 1_000             # coordinates of a Gauss tensor-product or Smolyak grid
MAX_SOBOL_DIM = 21_201           # coordinates of a Sobol' rule (scipy's direction numbers)
MAX_STATE = 200_000_000          # numbers in the state of a limit or a finite network (Q_1·d + Σ Q_{l-1}Q_l + Q_L·K)
MAX_DATA = 10_000_000            # numbers in one data set, teacher, probe array, data-file array or SGD batch
MAX_CSV_BYTES = 512 * 2**20      # bytes of a CSV data file (2·10⁷ numbers of 25 characters fit)
MAX_CSV_LINE = 4 * 2**20         # characters of one CSV line (checked while reading, line by line)
MAX_SAVES = 1_000_000            # save times of one run
MAX_TIME_STEPS = 1_000_000_000   # time steps of one run (t_end/dt, t_end/lr)
MAX_WIDTH = 10_000_000           # width n of a finite network ([sgd] widths, --widths)
MAX_REPLICAS = 100_000           # replicas of an ensemble
MAX_BATCH = 10_000_000           # points of an SGD batch
MAX_TASKS = 100_000              # tasks of one sweep


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
    raise ConfigError(key, f"unknown {what} {_shown(value)}; allowed: {_names(allowed)}")


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
            raise ConfigError(key, f"expected a list of numbers or names, got an entry {_shown(v)}")
        out.add(v)
    return out


def table(v, key: str) -> Mapping:
    """``v`` if it is a table (mapping), else ConfigError."""
    if not isinstance(v, Mapping):
        raise ConfigError(key, f"expected a table, got {type(v).__name__}")
    return v


def check_keys(t: Mapping, allowed, key: str, *, hint: str = "") -> None:
    """ConfigError naming the first key of ``t`` that is not in ``allowed`` (``hint`` ends the message)."""
    allowed = tuple(allowed)
    for k in t:
        if not is_one_of(k, allowed):
            where = f"{key}.{k}" if key else (str(k) or repr(k))
            raise ConfigError(where, f"unknown key; allowed in [{key or 'top level'}]: {_names(allowed)}{hint}")


def required(t: Mapping, name: str, key: str, hint: str = ""):
    """``t[name]``; ConfigError naming ``key.name`` when it is absent (or None), ``hint`` saying what to give."""
    v = t.get(name)
    if v is None:
        raise ConfigError(f"{key}.{name}" if key else name, "is required" + (f"; give {hint}" if hint else ""))
    return v


def get(t: Mapping, name: str, key: str, reader, default=None, **kw):
    """``reader(t[name], "key.name", **kw)`` with ``default`` for an absent entry; required when ``default`` is None.

    The table getter of the readers below, e.g. ``get(spec, "size", key, integer, 16, hi=MAX_GAUSS_SIZE)``.
    """
    where = f"{key}.{name}" if key else name
    v = t.get(name, default)
    if v is None:
        raise ConfigError(where, "is required")
    return reader(v, where, **kw)


def _shown(v) -> str:
    """A short repr of a user value for a message (a huge list or string is abbreviated)."""
    return _REPR.repr(v)


def _make_repr():
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 8, 8, 4, 8
    r.maxstring, r.maxlong, r.maxother = 80, 40, 80
    return r


_REPR = _make_repr()


def is_integer(v) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A real number (Python or numpy), not a bool; it may be inf or nan."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(v, key: str, lo: int | None = 1, hi: int | None = None) -> int:
    """An integer (not a bool) in [lo, hi] (``None``: unbounded), as ``int``."""
    if not is_integer(v):
        raise ConfigError(key, f"expected an integer, got {_shown(v)}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bound = f"in [{lo}, {hi}]" if lo is not None and hi is not None else (f">= {lo}" if hi is None else f"<= {hi}")
        raise ConfigError(key, f"must be an integer {bound}, got {int(v)}")
    return int(v)


def _bounds(low, high, open_low: bool, open_high: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low is not None:
        return f"{'>' if open_low else '>='} {low:g}"
    return f"{'<' if open_high else '<='} {high:g}"


def number(v, key: str, *, positive: bool = False, nonneg: bool = False, low: float | None = None,
           high: float | None = None, open_low: bool = False, open_high: bool = False, inf_ok: bool = False,
           none_ok: bool = False, hint: str = "") -> float | None:
    """A finite number (not a bool) as ``float``, in the interval the keywords give.

    ``positive``: > 0; ``nonneg``: >= 0; ``low``/``high`` bound it (open with ``open_low`` /
    ``open_high``); ``inf_ok`` admits +inf; ``none_ok`` passes ``None`` through; ``hint`` is
    added to the range message (e.g. " (0 freezes the layer)").
    """
    if v is None and none_ok:
        return None
    if positive or nonneg:
        low, open_low = 0.0, positive
    x = None
    if is_number(v):
        try:
            x = float(v)
        except (OverflowError, ValueError):
            x = None
    if x is None or math.isnan(x) or (math.isinf(x) and not (inf_ok and x > 0)):
        what = "number (or inf)" if inf_ok else "finite number"
        raise ConfigError(key, f"expected a {what}{' or None' if none_ok else ''}, got {_shown(v)}")
    if (low is not None and (x < low or (open_low and x == low))) or \
            (high is not None and (x > high or (open_high and x == high))):
        raise ConfigError(key, f"must be {_bounds(low, high, open_low, open_high)}{hint}, got {_shown(v)}")
    return x


def array(value, key: str, *, index_key: bool = True):
    """A (nested) list or array of finite numbers (bools refused) as a rectangular float64 numpy array.

    A wrong entry is named by its index: in the key (``key[2][0]``), or with ``index_key=False``
    in the message; an empty, scalar or ragged value is refused.  Lists are walked without
    recursion, so a deep list from Python never meets the recursion limit.
    """
    import numpy as np

    def bad(path, v):
        where = "".join(f"[{i}]" for i in path)
        if index_key:
            raise ConfigError(key + where, f"must be a finite number, got {_shown(v)}")
        raise ConfigError(key, f"entry {where} must be a finite number, got {_shown(v)}")

    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf" or value.ndim == 0 or value.size == 0:
            raise ConfigError(key, f"must be a non-empty array of numbers, got dtype {value.dtype} and shape {value.shape}")
        a = value.astype(np.float64)
    else:
        if not isinstance(value, (list, tuple)) or len(value) == 0:
            raise ConfigError(key, f"must be a non-empty list of numbers, got {_shown(value)}")
        stack = [(value, ())]
        while stack:
            v, path = stack.pop()
            rows = []
            for i, e in enumerate(v):
                t = type(e)
                if t is float or (t is int and -_FLOAT_MAX <= e <= _FLOAT_MAX):
                    continue
                if isinstance(e, (list, tuple)):
                    rows.append((e, path + (i,)))
                elif isinstance(e, np.ndarray) and e.ndim:
                    rows.append((e.tolist(), path + (i,)))
                elif not is_number(e) or not _finite(e):
                    bad(path + (i,), e)
            stack.extend(reversed(rows))
        try:
            a = np.array(value, dtype=np.float64)
        except ValueError:
            raise ConfigError(key, "must be rectangular (every row the same length)") from None
    finite = np.isfinite(a)
    if not finite.all():
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        bad(first, float(a[first]))
    return a


_FLOAT_MAX = 2**1023   # a Python int beyond it does not convert to float64


def _finite(v) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def boolean(v, key: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {_shown(v)}")
    return v


def string(v, key: str, allowed=None, *, empty_ok: bool = True) -> str:
    """A string (non-empty unless ``empty_ok``); one of ``allowed`` if given."""
    if not isinstance(v, str) or not (v or empty_ok):
        raise ConfigError(key, f"expected a {'' if empty_ok else 'non-empty '}string, got {_shown(v)}")
    if allowed is not None:
        choice(v, allowed, key)
    return v


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
