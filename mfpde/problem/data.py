"""Data sets and data laws: the expectation E_Z of SPEC §2 as a discrete weighted set (Problem room).

Every data expectation is a :class:`DataSet` — inputs ``X[M, d]``, targets ``Y[M, K]`` and
weights ``[M]`` (non-negative, summing to 1), so that E_Z g(Z) = Σ_m weights[m] g(X[m], Y[m])
(SPEC §3, "the data expectation E_Z is a rule too").  A data set comes from a finite training
set (:func:`finite_set`, equal weights), a file (:func:`load`: .npz, .csv, .h5/.hdf5), or a
population law integrated by a quadrature rule or sampled i.i.d. (:class:`GaussianTeacherLaw`
with a teacher y = f*(x), :class:`GaussianClassesLaw`); :func:`make_data` builds one from a
config table and :func:`probes` builds probe points for yhat(t, x).  Rules are duck-typed:
any object with ``.nodes`` (float64 ``[Q, k]``, nodes for the standard normal law on R^k)
and ``.weights`` (``[Q]``, sum 1) will do.  This module imports numpy and mfpde.errors at
module level; scipy is not needed, h5py and :mod:`mfpde.problem.quadrature` are imported lazily inside
the functions that use them.  Data files are never trusted: the shapes and dtypes an .npz or
HDF5 file declares, and the size of a CSV file, are checked against the data limit
(``MAX_DATA`` numbers per array, ``MAX_CSV_BYTES``, ``MAX_CSV_LINE``, in :mod:`mfpde.checks`) before
anything is read, and every failure of numpy, zipfile, h5py or the OS while opening or reading
one is a :class:`~mfpde.errors.DataError` naming the file.
"""
from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mfpde import checks
from mfpde.errors import ConfigError, DataError

__all__ = [
    "DATA_KINDS", "TEACHER_KINDS", "DataSet", "finite_set", "load",
    "SingleIndexTanh", "TwoLayerTeacher", "CallableTeacher",
    "GaussianTeacherLaw", "GaussianClassesLaw", "make_law", "make_data", "probes",
]

DATA_KINDS = ("file", "arrays", "teacher", "gaussian_classes")
TEACHER_KINDS = ("single_index_tanh", "two_layer")
FILE_EXTENSIONS = (".npz", ".csv", ".h5", ".hdf5")
_WEIGHT_SUM_TOL = 1e-10


# --------------------------------------------------------------------------- the data set

def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, order="C", copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class DataSet:
    """A weighted data set: E_Z g(Z) = Σ_m weights[m] g(X[m], Y[m]).

    The arrays are private float64 copies, C-contiguous and read-only.  Weights are kept as
    given: they must sum to 1 within 1e-10 (so equal weights stay exactly 1/M).  ``Y`` is
    always 2-D (``[M, K]``; 1-D targets become ``[M, 1]``); a 1-D ``X`` means d = 1.
    """

    X: np.ndarray
    Y: np.ndarray
    weights: np.ndarray
    name: str = "train"
    source: str = "arrays"

    def __post_init__(self):
        where = f"data set '{self.name}'"
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"data set name must be a non-empty string, got {self.name!r}.")
        X, Y = _check_xy(self.X, self.Y, where)
        w = _check_weights(self.weights, X.shape[0], where)
        if abs(w.sum() - 1.0) > _WEIGHT_SUM_TOL:
            raise DataError(f"{where}: weights sum to {w.sum()!r}, expected 1 "
                            f"(use finite_set(..., weights=w) to normalise them).")
        object.__setattr__(self, "X", _frozen(X))
        object.__setattr__(self, "Y", _frozen(Y))
        object.__setattr__(self, "weights", _frozen(w))
        object.__setattr__(self, "source", str(self.source).replace("\n", " "))

    @property
    def M(self) -> int:
        """Number of points."""
        return self.X.shape[0]

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.X.shape[1]

    @property
    def K(self) -> int:
        """Output dimension."""
        return self.Y.shape[1]

    def expect(self, values) -> np.ndarray:
        """Σ_m weights[m] values[m] for ``values`` of shape ``[M, ...]``."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0 or values.shape[0] != self.M:
            raise DataError(f"data set '{self.name}': expect() needs values with leading "
                            f"axis M = {self.M}, got shape {values.shape}.")
        return np.tensordot(self.weights, values, axes=(0, 0))

    def subset(self, idx, name: str | None = None) -> "DataSet":
        """The points ``idx`` (integer indices or a boolean mask) with equal weights (minibatches)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (self.M,):
                raise DataError(f"data set '{self.name}': boolean subset mask has shape "
                                f"{idx.shape}, expected ({self.M},).")
            idx = np.flatnonzero(idx)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise DataError(f"data set '{self.name}': subset needs a 1-D integer index array "
                            f"or boolean mask, got dtype {idx.dtype} and shape {idx.shape}.")
        if idx.size == 0:
            raise DataError(f"data set '{self.name}': subset index is empty; a data set needs M >= 1.")
        if idx.min() < -self.M or idx.max() >= self.M:
            raise DataError(f"data set '{self.name}': subset index out of range for M = {self.M}.")
        m = idx.size
        return DataSet(self.X[idx], self.Y[idx], np.full(m, 1.0 / m), name or self.name,
                       f"{self.source} [subset of {m} of {self.M} points]")

    def __repr__(self) -> str:
        return f"DataSet(name={self.name!r}, M={self.M}, d={self.d}, K={self.K}, source={self.source!r})"


def _numeric(a, what: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged nested lists and the like
        raise DataError(f"{where}: {what} is not a rectangular numeric array ({exc}).") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: {what} has non-numeric dtype {arr.dtype}, expected numbers.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{where}: {what} has a non-finite entry at index {tuple(int(i) for i in bad)}.")
    return arr


def _check_xy(X, Y, where: str, x_name: str = "X", y_name: str = "Y") -> tuple[np.ndarray, np.ndarray]:
    X = _numeric(X, x_name, where)
    Y = _numeric(Y, y_name, where)
    if X.ndim == 1:
        X = X[:, None]
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2:
        raise DataError(f"{where}: {x_name} has shape {X.shape}, expected [M] or [M, d].")
    if Y.ndim != 2:
        raise DataError(f"{where}: {y_name} has shape {Y.shape}, expected [M] or [M, K].")
    if X.shape[0] < 1:
        raise DataError(f"{where}: {x_name} has no rows, a data set needs M >= 1.")
    if X.shape[1] < 1 or Y.shape[1] < 1:
        raise DataError(f"{where}: {x_name} shape {X.shape} and {y_name} shape {Y.shape} need d >= 1 and K >= 1.")
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{where}: {x_name} has {X.shape[0]} rows but {y_name} has {Y.shape[0]}; "
                        f"they must have the same length M.")
    return X, Y


def _check_weights(w, M: int, where: str) -> np.ndarray:
    w = _numeric(w, "weights", where)
    if w.shape != (M,):
        raise DataError(f"{where}: weights have shape {w.shape}, expected ({M},).")
    if np.any(w < 0):
        raise DataError(f"{where}: weights must be >= 0, found {w.min()!r}.")
    if not w.sum() > 0:
        raise DataError(f"{where}: weights sum to 0, at least one must be positive.")
    return w


def finite_set(X, Y, name: str = "train", weights=None, source: str | None = None) -> DataSet:
    """A finite data set with equal weights 1/M (or ``weights``, normalised to sum 1).

    ``X`` is ``[M, d]`` (1-D means d = 1), ``Y`` is ``[M]`` or ``[M, K]``.
    """
    where = f"data set '{name}'"
    X, Y = _check_xy(X, Y, where)
    M = X.shape[0]
    if weights is None:
        w = np.full(M, 1.0 / M)
    else:
        w = _check_weights(weights, M, where)
        w = w / w.sum()
    if source is None:
        source = f"finite set of {M} points" + ("" if weights is None else " (weighted)")
    return DataSet(X, Y, w, name, source)


# --------------------------------------------------------------------------- files

def _why(exc: BaseException) -> str:
    """``Type: message`` of a library exception, on one line."""
    return f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")


def _shown(path) -> str:
    """A path as text for one-line messages (control characters escaped)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(path))


def load(path, name: str = "train", x_key: str = "x", y_key: str = "y", y_columns: int = 1) -> DataSet:
    """Load a finite data set (equal weights) from .npz, .csv or .h5/.hdf5.

    * ``.npz``: arrays ``x_key`` and ``y_key``.
    * ``.csv``: numbers separated by commas, one optional header line: a first line none of
      whose cells is a number (a first line with some numbers and some other cells is an
      error naming the cell); the last ``y_columns`` columns are Y.
    * ``.h5``/``.hdf5``: datasets ``x_key`` and ``y_key`` (paths inside the file allowed).

    Sizes are checked before reading: each array at most ``checks.MAX_DATA`` numbers (as
    declared by the .npz headers or HDF5 dataspaces), a CSV file at most
    ``checks.MAX_CSV_BYTES`` bytes and ``checks.MAX_CSV_LINE`` characters per line.  Every failure
    while opening or reading the file is a :class:`DataError` naming it.
    """
    y_columns = checks.integer(y_columns, "y_columns")
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError("path", f"must be a file path (a string), got {type(path).__name__}.")
    for k, v in (("x_key", x_key), ("y_key", y_key)):
        checks.string(v, k, empty_ok=False)
    try:
        path = Path(path)
        where = f"data file '{_shown(path)}'"
        is_file = path.is_file()
    except (OSError, ValueError, TypeError) as exc:   # a name too long, a NUL byte, ...
        raise DataError(f"data file '{_shown(path)}' cannot be opened "
                        f"({getattr(exc, 'strerror', None) or exc}).") from None
    if not is_file:
        raise DataError(f"{where} does not exist (or is not a regular file).")
    ext = path.suffix.lower()
    if ext == ".npz":
        X, Y = _read_npz(path, x_key, y_key, where)
        src = f"file {path} (x={x_key}, y={y_key})"
    elif ext == ".csv":
        X, Y = _read_csv(path, int(y_columns), where)
        src = f"file {path} (last {int(y_columns)} column(s) as y)"
    elif ext in (".h5", ".hdf5"):
        X, Y = _read_h5(path, x_key, y_key, where)
        src = f"file {path} (x={x_key}, y={y_key})"
    else:
        raise DataError(f"{where} has unknown extension {path.suffix!r}; "
                        f"supported: {', '.join(FILE_EXTENSIONS)}.")
    X, Y = _check_xy(X, Y, where, f"'{x_key}'" if ext != ".csv" else "x columns",
                     f"'{y_key}'" if ext != ".csv" else "y columns")
    return DataSet(X, Y, np.full(X.shape[0], 1.0 / X.shape[0]), name, src)


def _check_declared(shape, dtype, k: str, where: str, what: str) -> None:
    """Refuse, before reading, an array of non-numeric dtype or of more than MAX_DATA numbers."""
    if shape is None:
        raise DataError(f"{where}: {what} '{k}' has no data (an empty dataspace), expected numbers.")
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{where}: {what} '{k}' has dtype {dtype}, expected numbers (bool, integer or float).")
    limit = checks.MAX_DATA
    size = math.prod(int(n) for n in shape)
    if size > limit:
        raise DataError(f"{where}: {what} '{k}' declares shape {tuple(int(n) for n in shape)} ({size} numbers); "
                        f"a data array may have at most {limit} numbers (docs/config.md).")


def _npy_header(member):
    """(shape, fortran_order, dtype) of an .npy stream, reading only its header."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        return fmt.read_array_header_1_0(member)
    if version == (2, 0):
        return fmt.read_array_header_2_0(member)
    reader = getattr(fmt, "_read_array_header", None)
    if reader is None:
        raise ValueError(f"unsupported .npy format version {version}")
    return reader(member, version)


def _read_npz(path: Path, x_key: str, y_key: str, where: str):
    import zipfile

    try:
        with open(path, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                raise DataError(f"{where} holds a single .npy array, expected an .npz archive "
                                f"with arrays '{x_key}' and '{y_key}'.")
            fh.seek(0)
            with zipfile.ZipFile(fh) as z:
                names = z.namelist()
                members = {}
                for k in (x_key, y_key):   # headers first: nothing is decompressed before every check
                    member = next((m for m in (f"{k}.npy", k) if m in names), None)
                    if member is None:
                        keys = [n[:-4] if n.endswith(".npy") else n for n in names]
                        raise DataError(f"{where} has no array '{k}'; it contains {keys}.")
                    with z.open(member) as m:
                        try:
                            shape, _, dtype = _npy_header(m)
                        except ValueError as exc:
                            raise DataError(f"{where}: member '{member}' is not an .npy array ({_why(exc)}).") from None
                    _check_declared(shape, dtype, k, where, "array")
                    members[k] = member
                out = []
                for k in (x_key, y_key):
                    with z.open(members[k]) as m:
                        out.append(np.lib.format.read_array(m, allow_pickle=False))
    except DataError:
        raise
    except Exception as exc:   # zipfile, zlib, numpy and the OS raise many types on damaged input
        raise DataError(f"{where} is not a readable .npz archive of numeric arrays "
                        f"({_why(exc)}).") from None
    return out[0], out[1]


def _number_or_none(t: str):
    try:
        return float(t)
    except ValueError:
        return None


def _read_csv(path: Path, y_columns: int, where: str):
    from array import array

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{where} cannot be read ({exc.strerror or exc}).") from None
    if size > checks.MAX_CSV_BYTES:
        raise DataError(f"{where} has {size} bytes; a CSV data file may have at most {checks.MAX_CSV_BYTES} bytes "
                        f"(use .npz or .h5 for larger data).")
    limit, max_line = checks.MAX_DATA, checks.MAX_CSV_LINE
    values = array("d")
    ncol = nrows = 0
    header = False
    try:
        with open(path, encoding="utf-8-sig", newline=None) as fh:
            lineno = 0
            while True:
                ln = fh.readline(max_line + 1)
                if not ln:
                    break
                lineno += 1
                if len(ln.rstrip("\r\n")) > max_line:
                    raise DataError(f"{where}: line {lineno} is longer than {max_line} characters.")
                ln = ln.strip()
                if not ln:
                    continue
                fields = ln.split(",")
                row = [_number_or_none(t) for t in fields]
                first = nrows == 0 and not header
                if None in row:
                    if first and all(v is None for v in row):   # a header: no cell is a number
                        header = True
                        continue
                    bad = row.index(None)
                    msg = f"{where}: line {lineno} column {bad + 1} is {fields[bad].strip()!r}, expected a number"
                    if first:   # neither a header (it holds a number) nor data
                        num = next(i for i, v in enumerate(row) if v is not None)
                        msg += (f"; the line is not a header either, its column {num + 1} is a number "
                                f"({fields[num].strip()!r}): a header line holds no numbers")
                    raise DataError(msg + ".")
                if nrows == 0:
                    ncol = len(row)
                    if ncol <= y_columns:
                        raise DataError(f"{where} has {ncol} column(s), expected more than y_columns = {y_columns} "
                                        f"(at least one x column).")
                elif len(row) != ncol:
                    raise DataError(f"{where}: line {lineno} has {len(row)} columns, expected {ncol} "
                                    f"like the first data row.")
                nrows += 1
                if nrows * max(ncol - y_columns, y_columns) > limit:
                    raise DataError(f"{where}: its x or y columns hold more than {limit} numbers "
                                    f"(line {lineno}); a data array may have at most {limit} numbers (docs/config.md).")
                values.extend(row)
    except DataError:
        raise
    except Exception as exc:   # undecodable bytes, I/O errors
        raise DataError(f"{where} cannot be read as UTF-8 text ({_why(exc)}).") from None
    if nrows == 0:
        raise DataError(f"{where} has a header but no data rows." if header else
                        f"{where} is empty, expected comma-separated rows of numbers.")
    A = np.frombuffer(values, dtype=np.float64).reshape(nrows, ncol).copy()
    return A[:, :-y_columns], A[:, -y_columns:]


def _read_h5(path: Path, x_key: str, y_key: str, where: str):
    import h5py

    k = None
    try:
        with h5py.File(path, "r") as f:
            objs = []
            for k in (x_key, y_key):   # shapes and dtypes first: nothing is read before every check
                if k not in f:
                    raise DataError(f"{where} has no dataset '{k}'; top-level entries are {sorted(f.keys())}.")
                obj = f[k]
                if not isinstance(obj, h5py.Dataset):
                    raise DataError(f"{where}: '{k}' is a {type(obj).__name__.lower()}, expected a numeric dataset.")
                _check_declared(obj.shape, obj.dtype, k, where, "dataset")
                objs.append(obj)
            out = []
            for k, obj in zip((x_key, y_key), objs):
                out.append(obj[()])
    except DataError:
        raise
    except Exception as exc:   # h5py raises OSError, KeyError, RuntimeError, ValueError, TypeError, ...
        what = f" (reading '{k}')" if k is not None else ""
        raise DataError(f"{where} is not a readable HDF5 file{what}: {_why(exc)}.") from None
    return out[0], out[1]


# --------------------------------------------------------------------------- teachers

def _as_inputs(X, d: int | None, who: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1 and d == 1:
        X = X[:, None]
    if X.ndim != 2 or (d is not None and X.shape[1] != d):
        raise DataError(f"teacher {who}: inputs have shape {X.shape}, expected [M, {d if d else 'd'}].")
    return X


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


_TEACHER_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": _sigmoid,
    "identity": lambda z: z,
}


class SingleIndexTanh:
    """Teacher y = tanh(scale · <u, x>) with u = direction / |direction| (K = 1)."""

    name = "single_index_tanh"

    def __init__(self, direction, scale: float = 1.0):
        u = np.asarray(direction, dtype=np.float64).reshape(-1)
        if u.size < 1 or not np.all(np.isfinite(u)) or not np.any(u != 0):
            raise ConfigError("teacher.direction", f"must be a finite non-zero vector, got {direction!r}.")
        u = u / np.max(np.abs(u))   # rescale first: the norm of huge or tiny entries must not overflow
        self.scale = checks.number(scale, "teacher.scale")
        self.direction = u / np.linalg.norm(u)
        self.direction.setflags(write=False)
        self.d = u.size
        self.K = 1

    def __call__(self, X) -> np.ndarray:
        X = _as_inputs(X, self.d, self.name)
        with np.errstate(over="ignore"):   # |scale·<u, x>| beyond the float range: tanh(±inf) = ±1 exactly
            return np.tanh(self.scale * (X @ self.direction))[:, None]

    def describe(self) -> str:
        return f"single_index_tanh(d={self.d}, scale={self.scale:g})"

    def to_dict(self) -> dict:
        return {"kind": self.name, "direction": self.direction.tolist(), "scale": self.scale}


class TwoLayerTeacher:
    """Random two-layer teacher y_k(x) = (1/width) Σ_j a_jk σ(<w_j, x>).

    w_j = r_j / √k with r_j ~ N(0, I_k) on the first k = ``index_dim`` coordinates (default k = d;
    zero beyond: a k-index target y = f*(Ux), U = the first k axes, SPEC §7), so <w_j, x> = O(1)
    for x ~ N(0, I_d); a_jk = √width · g_jk with g_jk ~ N(0, 1), so y = width^{-1/2} Σ_j g_jk σ(·)
    has variance E σ(<w, x>)² = O(1) for every width (for tanh and unit Gaussian inputs, Var y ≈
    0.39).  Draw order from ``numpy.random.default_rng(seed)``: r ``[width, k]``, then g ``[width,
    output_dim]`` (so k = d draws what it always drew).
    """

    name = "two_layer"

    def __init__(self, d: int, width: int = 4, seed: int = 0, activation: str = "tanh", output_dim: int = 1,
                 index_dim: int | None = None):
        self.d, self.width = checks.integer(d, "teacher.d"), checks.integer(width, "teacher.width")
        self.K = checks.integer(output_dim, "teacher.output_dim")
        self.seed = checks.integer(seed, "teacher.seed", lo=0)
        self.k = self.d if index_dim is None else checks.integer(index_dim, "teacher.index_dim", 1, self.d)
        self.activation = checks.choice(activation, sorted(_TEACHER_ACTIVATIONS), "teacher.activation", what="activation")
        rng = np.random.default_rng(self.seed)
        self.w = np.zeros((self.width, self.d))
        self.w[:, :self.k] = rng.standard_normal((self.width, self.k)) / math.sqrt(self.k)
        self.a = math.sqrt(self.width) * rng.standard_normal((self.width, self.K))
        self.w.setflags(write=False)
        self.a.setflags(write=False)

    def __call__(self, X) -> np.ndarray:
        X = _as_inputs(X, self.d, self.name)
        return _TEACHER_ACTIVATIONS[self.activation](X @ self.w.T) @ self.a / self.width

    def describe(self) -> str:
        return (f"two_layer(d={self.d}, width={self.width}, seed={self.seed}, "
                f"activation={self.activation}, output_dim={self.K}" + (f", index_dim={self.k})" if self.k != self.d else ")"))

    def to_dict(self) -> dict:
        return {"kind": self.name, "width": self.width, "seed": self.seed,
                "activation": self.activation, "output_dim": self.K, **({"index_dim": self.k} if self.k != self.d else {})}


class CallableTeacher:
    """A user function f(X[M, d]) -> [M] or [M, K]; outputs are checked on every call.

    ``to_dict()`` records only the name: such a teacher cannot be rebuilt from a config.
    """

    def __init__(self, f: Callable[[np.ndarray], Any], name: str, d: int | None = None,
                 output_dim: int | None = None):
        if not callable(f):
            raise ConfigError("teacher", f"CallableTeacher needs a callable, got {type(f).__name__}.")
        if not isinstance(name, str) or not name:
            raise ConfigError("teacher.name", f"must be a non-empty string, got {name!r}.")
        self.f, self.name, self.d, self.K = f, name, d, output_dim

    def __call__(self, X) -> np.ndarray:
        X = _as_inputs(X, self.d, self.name)
        M = X.shape[0]
        try:
            Y = np.asarray(self.f(X), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"teacher '{self.name}' did not return numbers ({exc}).") from None
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2 or Y.shape[0] != M or (self.K is not None and Y.shape[1] != self.K):
            raise DataError(f"teacher '{self.name}' returned shape {Y.shape} for {M} inputs; "
                            f"expected [{M}] or [{M}, {self.K if self.K else 'K'}].")
        if not np.all(np.isfinite(Y)):
            raise DataError(f"teacher '{self.name}' returned non-finite values.")
        return Y

    def describe(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        return {"kind": "callable", "name": self.name}


# --------------------------------------------------------------------------- population laws

def _rule_arrays(rule, d: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Nodes [Q, d] and weights [Q] of a duck-typed rule on the standard normal R^d."""
    try:
        nodes = np.asarray(rule.nodes, dtype=np.float64)
        weights = np.asarray(rule.weights, dtype=np.float64)
    except AttributeError:
        raise ConfigError("rule", f"expected an object with .nodes and .weights, got {type(rule).__name__}.") from None
    if nodes.ndim == 1:
        nodes = nodes[:, None]
    if nodes.ndim != 2 or nodes.shape[1] != d:
        raise ConfigError("rule", f"rule nodes have shape {nodes.shape}, expected [Q, {d}] for a data law on R^{d}.")
    if weights.shape != (nodes.shape[0],) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ConfigError("rule", f"rule weights must be {nodes.shape[0]} finite numbers >= 0.")
    if abs(weights.sum() - 1.0) > _WEIGHT_SUM_TOL or not np.all(np.isfinite(nodes)):
        raise ConfigError("rule", f"rule weights must sum to 1 (got {weights.sum()!r}) and nodes be finite.")
    desc = rule.describe() if callable(getattr(rule, "describe", None)) else None
    if not isinstance(desc, str):
        desc = getattr(rule, "name", None)
    if not isinstance(desc, str):
        desc = f"{type(rule).__name__}(Q={nodes.shape[0]})"
    return nodes, weights, desc


def _check_sample_args(rng, n) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("rng", f"sample() needs a numpy.random.Generator, got {type(rng).__name__}.")
    checks.integer(n, "sample")


class GaussianTeacherLaw:
    """x ~ N(0, input_std² I_d), y = teacher(x)."""

    def __init__(self, d: int, teacher: Callable, input_std: float = 1.0):
        d, input_std = checks.integer(d, "d"), checks.number(input_std, "input_std", positive=True)
        tdim = getattr(teacher, "d", None)
        if tdim is not None and tdim != d:
            raise ConfigError("teacher", f"teacher acts on R^{tdim} but the law has d = {d}.")
        self.d, self.teacher, self.input_std = int(d), teacher, float(input_std)
        K = getattr(teacher, "K", None)
        self.K = int(K) if K is not None else teacher(np.zeros((1, self.d))).shape[1]

    def _teacher_name(self) -> str:
        return getattr(self.teacher, "name", type(self.teacher).__name__)

    def describe(self) -> str:
        std = "" if self.input_std == 1.0 else f", input_std={self.input_std:g}"
        return f"gaussian_teacher(d={self.d}, teacher={self._teacher_name()}{std})"

    def to_dict(self) -> dict:
        t = self.teacher.to_dict() if callable(getattr(self.teacher, "to_dict", None)) else {"kind": "callable"}
        return {"kind": "teacher", "d": self.d, "teacher": t, "input_std": self.input_std}

    def sample(self, rng: np.random.Generator, n: int, name: str = "train") -> DataSet:
        """n i.i.d. draws (equal weights); draws X = input_std · rng.standard_normal((n, d))."""
        _check_sample_args(rng, n)
        X = self.input_std * rng.standard_normal((int(n), self.d))
        return DataSet(X, self.teacher(X), np.full(int(n), 1.0 / n), name,
                       f"{self.describe()}, {int(n)} i.i.d. samples")

    def quadrature(self, rule, name: str = "test") -> DataSet:
        """The law integrated by ``rule`` (a rule for N(0, I_d)): X = input_std · nodes."""
        nodes, weights, desc = _rule_arrays(rule, self.d)
        X = self.input_std * nodes
        return DataSet(X, self.teacher(X), weights, name, f"{self.describe()} on {desc}")


class GaussianClassesLaw:
    """y ∈ {−1, +1} with P(y = +1) = p_pos, x | y ~ N(0, τ_y² I_d) (K = 1)."""

    K = 1

    def __init__(self, d: int, tau_pos: float = 1.0, tau_neg: float = 2.0, p_pos: float = 0.5):
        self.d = checks.integer(d, "d")
        self.tau_pos = checks.number(tau_pos, "tau_pos", positive=True)
        self.tau_neg = checks.number(tau_neg, "tau_neg", positive=True)
        self.p_pos = checks.number(p_pos, "p_pos", low=0.0, high=1.0)

    def describe(self) -> str:
        return (f"gaussian_classes(d={self.d}, tau_pos={self.tau_pos:g}, tau_neg={self.tau_neg:g}, "
                f"p_pos={self.p_pos:g})")

    def to_dict(self) -> dict:
        return {"kind": "gaussian_classes", "d": self.d, "tau_pos": self.tau_pos,
                "tau_neg": self.tau_neg, "p_pos": self.p_pos}

    def sample(self, rng: np.random.Generator, n: int, name: str = "train") -> DataSet:
        """n i.i.d. draws; draws u = rng.random(n) (y = +1 where u < p_pos), then z = rng.standard_normal((n, d))."""
        _check_sample_args(rng, n)
        n = int(n)
        y = np.where(rng.random(n) < self.p_pos, 1.0, -1.0)
        tau = np.where(y > 0, self.tau_pos, self.tau_neg)
        X = tau[:, None] * rng.standard_normal((n, self.d))
        return DataSet(X, y, np.full(n, 1.0 / n), name, f"{self.describe()}, {n} i.i.d. samples")

    def quadrature(self, rule, name: str = "test") -> DataSet:
        """Two scaled copies of ``rule``: (τ+ nodes, +1, p_pos w) and (τ− nodes, −1, (1 − p_pos) w)."""
        nodes, w, desc = _rule_arrays(rule, self.d)
        Q = nodes.shape[0]
        X = np.concatenate([self.tau_pos * nodes, self.tau_neg * nodes])
        Y = np.concatenate([np.ones(Q), -np.ones(Q)])
        weights = np.concatenate([self.p_pos * w, (1.0 - self.p_pos) * w])
        return DataSet(X, Y, weights, name, f"{self.describe()} on {desc}")


# --------------------------------------------------------------------------- config tables

def _make_teacher(table, key: str, d: int):
    table = checks.table(table, key)
    kind = checks.choice(table.get("kind"), TEACHER_KINDS, f"{key}.kind", what="teacher kind")
    if kind == "single_index_tanh":
        checks.check_keys(table, ("kind", "direction", "scale"), key)
        if "direction" not in table:   # by rotation invariance of N(0, I_d), any unit direction: the first axis
            return SingleIndexTanh(np.eye(1, d).ravel(), checks.get(table, "scale", key, checks.number, 1.0))
        u = checks.array(table.get("direction"), f"{key}.direction")
        if u.ndim != 1 or u.size != d:
            raise ConfigError(f"{key}.direction", f"must be a list of d = {d} numbers, got shape {u.shape}.")
        if not np.any(u != 0):
            raise ConfigError(f"{key}.direction", "must be non-zero.")
        return SingleIndexTanh(u, checks.get(table, "scale", key, checks.number, 1.0))
    checks.check_keys(table, ("kind", "width", "seed", "activation", "output_dim", "index_dim"), key)
    activation = checks.choice(table.get("activation", "tanh"), sorted(_TEACHER_ACTIVATIONS),
                               f"{key}.activation", what="activation")
    return TwoLayerTeacher(d, checks.get(table, "width", key, checks.integer, 4),
                           checks.get(table, "seed", key, checks.integer, 0, lo=0), activation,
                           checks.get(table, "output_dim", key, checks.integer, 1),
                           checks.get(table, "index_dim", key, checks.integer, d, hi=d))


_LAW_KEYS = {
    "teacher": ("kind", "d", "teacher", "input_std"),
    "gaussian_classes": ("kind", "d", "tau_pos", "tau_neg", "p_pos"),
}
_HOW_KEYS = ("rule", "sample", "seed", "radius_rule")   # radius_rule: the SPEC §7 reduction (mfpde.problem.reduction)


def make_law(spec: Mapping, key: str):
    """The population law of a ``kind = "teacher"`` or ``"gaussian_classes"`` table (rule/sample/seed ignored)."""
    spec = checks.table(spec, key)
    kind = checks.choice(spec.get("kind"), tuple(_LAW_KEYS), f"{key}.kind", what="population law kind")
    checks.check_keys(spec, _LAW_KEYS[kind] + _HOW_KEYS, key)
    d = checks.get(spec, "d", key, checks.integer)
    if kind == "teacher":
        if "teacher" not in spec:
            raise ConfigError(f"{key}.teacher", "is required (a table with kind = "
                                                f"{' or '.join(repr(k) for k in TEACHER_KINDS)}).")
        teacher = _make_teacher(spec["teacher"], f"{key}.teacher", d)
        return GaussianTeacherLaw(d, teacher, checks.get(spec, "input_std", key, checks.number, 1.0, positive=True))
    return GaussianClassesLaw(d, checks.get(spec, "tau_pos", key, checks.number, 1.0, positive=True),
                              checks.get(spec, "tau_neg", key, checks.number, 2.0, positive=True),
                              checks.get(spec, "p_pos", key, checks.number, 0.5, low=0.0, high=1.0))


def _key_name(key: str) -> str:
    return key.rsplit(".", 1)[-1] or "train"


def make_data(spec: Mapping, key: str, rng_seed: int, base_dir=None) -> DataSet:
    """Build a data set from a config table (kinds in :data:`DATA_KINDS`), validating it first.

    The data set's name is the last component of ``key`` ("data.train" -> "train").  For
    ``sample = N`` the generator is ``default_rng(seed)`` when ``seed`` is given, otherwise
    ``default_rng([rng_seed, crc32(key)])`` (so "train" and "test" draw different points).
    Relative file paths are resolved against ``base_dir`` (e.g. the config file's folder).
    """
    spec = checks.table(spec, key)
    rng_seed = checks.integer(rng_seed, "seed", lo=0)
    kind = checks.choice(spec.get("kind"), DATA_KINDS, f"{key}.kind", what="data kind")
    name = _key_name(key)

    if kind == "file":
        checks.check_keys(spec, ("kind", "path", "x_key", "y_key", "y_columns"), key)
        path = Path(checks.get(spec, "path", key, checks.string, empty_ok=False))
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        return load(path, name, checks.get(spec, "x_key", key, checks.string, "x", empty_ok=False),
                    checks.get(spec, "y_key", key, checks.string, "y", empty_ok=False),
                    checks.get(spec, "y_columns", key, checks.integer, 1))

    if kind == "arrays":
        checks.check_keys(spec, ("kind", "x", "y", "weights"), key)
        X = checks.array(spec.get("x"), f"{key}.x")
        Y = checks.array(spec.get("y"), f"{key}.y")
        if X.ndim > 2 or Y.ndim > 2:
            raise ConfigError(f"{key}.{'x' if X.ndim > 2 else 'y'}", "must be a list of numbers or of rows.")
        if X.shape[0] != Y.shape[0]:
            raise ConfigError(f"{key}.y", f"has {Y.shape[0]} entries but x has {X.shape[0]} rows.")
        w = None
        if "weights" in spec:
            w = checks.array(spec["weights"], f"{key}.weights")
            if w.shape != (X.shape[0],) or np.any(w < 0) or not w.sum() > 0:
                raise ConfigError(f"{key}.weights", f"must be {X.shape[0]} numbers >= 0 with a positive sum.")
        return finite_set(X, Y, name, w, source=f"arrays from config table {key} ({X.shape[0]} points)")

    law = make_law(spec, key)
    if "radius_rule" in spec:   # the reduced data set is built by mfpde.problem.reduction.data_set
        raise ConfigError(f"{key}.radius_rule", "is the rule of r = |P⊥x| of the isotropic-Gaussian reduction "
                          "(SPEC §7), which does not apply to this configuration; remove it")
    has_rule, has_sample = "rule" in spec, "sample" in spec
    if has_rule == has_sample:
        raise ConfigError(f"{key}.rule", "give exactly one of rule = {...} (quadrature) or sample = N (i.i.d. draws).")
    if has_rule:
        if "seed" in spec:
            raise ConfigError(f"{key}.seed", "is only used with sample = N; remove it or replace rule by sample.")
        from mfpde.problem.quadrature import make_rule

        rule_key = f"{key}.rule"
        rule = make_rule(checks.table(spec["rule"], rule_key), rule_key)
        try:
            return law.quadrature(rule, name)
        except ConfigError as exc:
            if exc.key != "rule":
                raise
            raise ConfigError(rule_key, str(exc).split(": ", 1)[-1]) from None
    n = checks.get(spec, "sample", key, checks.integer)
    if "seed" in spec:
        seed = checks.get(spec, "seed", key, checks.integer, lo=0)
        rng, how = np.random.default_rng(seed), f"seed={seed}"
    else:
        rng = np.random.default_rng([int(rng_seed), zlib.crc32(key.encode())])
        how = f"seed=[{int(rng_seed)}, crc32({key!r})]"
    ds = law.sample(rng, n, name)
    return replace(ds, source=f"{ds.source} ({how})")


# --------------------------------------------------------------------------- probe points

def probes(spec_or_array, d: int, key: str = "probes") -> np.ndarray:
    """Probe points ``[P, d]`` for yhat(t, x): a list/array of points, or a grid table.

    ``{kind = "grid", low, high, size}`` is ``size`` equally spaced points on [low, high]; for
    d > 1 they lie on the line along the first axis (other coordinates 0).  A flat list is
    accepted for d = 1 only.  The result is a read-only float64 array.
    """
    if not checks.is_integer(d) or d < 1:
        raise ConfigError(key, f"input dimension d must be an integer >= 1, got {d!r}.")
    if isinstance(spec_or_array, Mapping):
        table = spec_or_array
        checks.choice(table.get("kind"), ("grid",), f"{key}.kind", what="probe table kind")
        checks.check_keys(table, ("kind", "low", "high", "size"), key)
        low, high = checks.get(table, "low", key, checks.number), checks.get(table, "high", key, checks.number)
        size = checks.get(table, "size", key, checks.integer)
        if size > 1 and not high > low:
            raise ConfigError(f"{key}.high", f"must be > low = {low:g}, got {high:g}.")
        P = np.zeros((size, d))
        P[:, 0] = np.linspace(low, high, size)
    else:
        P = checks.array(spec_or_array, key)
        if P.ndim == 1:
            if d != 1:
                raise ConfigError(key, f"a flat list of probes is only allowed for d = 1; give rows of {d} numbers.")
            P = P[:, None]
        if P.ndim != 2 or P.shape[1] != d:
            raise ConfigError(key, f"probe points have shape {P.shape}, expected [P, {d}].")
    return _frozen(P)
