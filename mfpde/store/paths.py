"""Output paths checked before any work (Store room).

Every command that writes calls :func:`check_outputs` (or :func:`check_output` per path)
before it builds a system, trains a network or reads its inputs, so that a bad path costs one
error line instead of a traceback after hours of work.  For each output:

* the path is a non-empty string without NUL characters; each name in it fits the file
  system (``NAME_MAX`` bytes, and the last name leaves :data:`TEMP_ROOM` bytes for the
  temporary name of an atomic write); the whole path fits ``PATH_MAX``;
* the nearest existing folder on the way is a folder, not a file, and a file can really be
  created in it (a probe file is created and removed at once: ``os.access`` says yes to root
  on every file system, even ``/proc``); missing folders below it are left to the writer;
* a file output is not a folder or a special file (``/dev/null`` is never replaced); a
  folder output is not a file;
* an existing file is replaced only if it is an mfpde output *of the same kind*
  (:func:`sniff`: HDF5 signature and root attributes read with h5py read-only, never raising
  on a damaged or foreign file, which counts as "not an mfpde output") or ``overwrite`` is
  given;
* an input of the same command is never replaced, ``overwrite`` or not (the same file by
  ``os.path.samefile``: hard and symbolic links included); two outputs of one command are
  never the same file.

Every refusal is a :class:`~mfpde.errors.ConfigError` whose key is the command-line option.
Imports only :mod:`mfpde.errors`, the standard library and h5py (lazily).
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from mfpde.errors import ConfigError

#: bytes the last name of an output must leave free: atomic writers create ``.NAME.XXXXXXXX.tmp``
#: (14 bytes more) next to it; 32 leaves room for other temporary-name schemes.
TEMP_ROOM = 32
NAME_MAX = 255      # used when the file system does not say (os.pathconf)
PATH_MAX = 4096

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: file kinds: what a command writes, and how :func:`sniff` names a file it recognizes
FILE_KINDS = {
    "limit": "a limit solution (mfpde solve)",
    "reference": "a stored reference solution (mfpde reference build)",
    "refine": "a refinement study (mfpde refine)",
    "compare": "a limit-vs-width comparison (mfpde compare)",
    "collect": "a collected sweep (mfpde collect)",
    "sgd-run": "a sweep task result (mfpde sweep)",
    "runs": "a run store (mfpde sgd)",
    "checkpoint": "a solve checkpoint (mfpde solve --checkpoint)",
    "sgd-checkpoint": "an SGD checkpoint (mfpde sgd --checkpoint-every)",
    "manifest": "a reference manifest (MANIFEST.sha256)",
    "index": "a sweep index (index.json)",
    "figure": "a figure (PNG, or a PDF/SVG made by matplotlib)",
}
#: folder kinds
DIR_KINDS = {
    "directory": "a folder",
    "sweep": "a sweep folder (mfpde sweep)",
    "sgd-checkpoints": "a folder of SGD checkpoints (RUNS.h5.ckpt)",
}
#: an existing file an output of a kind may replace without ``overwrite``
_REPLACES = {"manifest": ("manifest", "empty")}

_TITLES = (   # title attribute prefixes of the NetCDF files mfpde writes
    ("mfpde mean-field limit solution", "limit"),
    ("mfpde refinement study", "refine"),
    ("mfpde comparison", "compare"),
    ("mfpde sweep:", "collect"),
    ("mfpde finite-width SGD run", "sgd-run"),
)
_FORMATS = {"mfpde-runs": "runs", "mfpde-checkpoint": "checkpoint", "mfpde-sgd-checkpoint": "sgd-checkpoint"}
_MANIFEST_LINE = re.compile(r"^[0-9a-fA-F]{64} [ *]?\S.*$")
_TEXT_LIMIT = 64 << 20   # larger files are not sniffed as text (and are no manifest or index)


def _show(path) -> str:
    """A path as the error line shows it (quoted, line breaks escaped by repr)."""
    return repr(str(path))


def _attr(f, name):
    try:
        v = f.attrs.get(name)
    except Exception:  # noqa: BLE001 - h5py raises many types on damaged attributes
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if v is None:
        return None
    try:
        return str(v.item()) if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v
    except Exception:  # noqa: BLE001
        return None


def _sniff_hdf5(path) -> str | None:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        return None
    try:
        try:
            f = h5py.File(path, "r", locking=False)
        except TypeError:  # pragma: no cover - h5py < 3.5 has no locking argument
            f = h5py.File(path, "r")
    except Exception:  # noqa: BLE001 - damaged or foreign: not an mfpde output
        return None
    try:
        fmt = _attr(f, "format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt]
        title = _attr(f, "title")
        if isinstance(title, str):
            for prefix, kind in _TITLES:
                if title.startswith(prefix):
                    if kind == "limit" and _attr(f, "reference_name") is not None:
                        return "reference"
                    return kind
        elif title is None and _attr(f, "expected_rate") is not None and _attr(f, "loss") is not None:
            return "compare"   # comparisons written before they had a title
        return None
    except Exception:  # noqa: BLE001
        return None
    finally:
        try:
            f.close()
        except Exception:  # noqa: BLE001 # pragma: no cover
            pass


_FIGURE_LIMIT = 64 * 2**20   # bytes read to find matplotlib's producer string in a PDF/SVG


def sniff(path) -> str | None:
    """The kind of mfpde output ``path`` is (a key of :data:`FILE_KINDS`, or ``"empty"``), else
    None: absent, unreadable, damaged or foreign.  Reads only; never raises."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size == 0:
            return "empty"
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head == HDF5_SIGNATURE:
                kind = None
            elif head == PNG_SIGNATURE:
                return "figure"
            elif head.startswith((b"%PDF-", b"<?xml", b"<svg")) and st.st_size <= _FIGURE_LIMIT:
                # PDF and SVG figures count only when matplotlib made them (its producer string)
                body = head + fh.read()
                return "figure" if (b"Matplotlib" in body or b"matplotlib" in body[:4096]) else None
            elif st.st_size <= _TEXT_LIMIT:
                text = (head + fh.read()).decode("utf-8")
                return _sniff_text(text)
            else:
                return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return kind if kind is not None else _sniff_hdf5(path)


def _sniff_text(text: str) -> str | None:
    if text.lstrip().startswith("{"):
        try:
            idx = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return "index" if isinstance(idx, dict) and idx.get("format") == "mfpde-sweep" else None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and all(_MANIFEST_LINE.match(ln) for ln in lines):
        return "manifest"
    return None


def same_file(a, b) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same inode when both exist (hard and
    symbolic links included), else the same resolved path.  Never raises."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def _nearest_existing(p: Path, key: str) -> tuple[Path, os.stat_result]:
    """The nearest existing path at or above ``p`` (walked as written, '..' included)."""
    d = p
    while True:
        try:
            return d, os.stat(d)
        except (FileNotFoundError, NotADirectoryError):
            if d == d.parent:
                raise ConfigError(key, f"{_show(p)}: no existing folder on the way") from None
            d = d.parent
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG and d != d.parent:
                d = d.parent   # the name lengths are checked (and reported) by the caller
                continue
            raise ConfigError(key, f"cannot use {_show(d)}: {exc.strerror or exc}") from None


def _limits(folder: Path) -> tuple[int, int]:
    out = []
    for name, default in (("PC_NAME_MAX", NAME_MAX), ("PC_PATH_MAX", PATH_MAX)):
        try:
            v = os.pathconf(folder, name)
        except (OSError, ValueError, AttributeError):
            v = -1
        out.append(v if isinstance(v, int) and v > 0 else default)
    return out[0], out[1]


def _probe(folder: Path, key: str, target: Path) -> None:
    """Create and remove a file in ``folder``: the only sure test that an output can be written."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(key, f"cannot write {_show(target)}: folder {_show(folder)} is not writable")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mfpde-probe-", dir=folder)
    except OSError as exc:
        raise ConfigError(key, f"cannot write {_show(target)}: cannot create a file in folder {_show(folder)} "
                               f"({exc.strerror or exc})") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:  # pragma: no cover
        pass


def check_output(path, *, kind: str, overwrite: bool = False, inputs: Iterable = (), key: str = "--output") -> Path:
    """Check one output path before any work (see the module docstring); returns it as a Path.

    ``kind``: a key of :data:`FILE_KINDS` (a file) or :data:`DIR_KINDS` (a folder).
    ``inputs``: the files the command reads; none of them is ever the output.
    ``key``: the option named in the error (``--output``, ``--checkpoint`` …).
    """
    if kind not in FILE_KINDS and kind not in DIR_KINDS:   # a programming error, not a user's
        raise ValueError(f"unknown output kind {kind!r}")
    is_dir = kind in DIR_KINDS
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(key, f"expected a path, got {path!r}")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ConfigError(key, "expected a " + ("folder" if is_dir else "file") + " name, got an empty string")
    if "\0" in text:
        raise ConfigError(key, f"{_show(text)} contains a NUL character")
    try:
        raw = os.fsencode(text)
        absolute = os.fsencode(os.path.abspath(text))
    except (UnicodeError, ValueError, OSError):
        raise ConfigError(key, f"{_show(text)} cannot be encoded as a file name") from None
    p = Path(text)
    if not is_dir and (raw.endswith(b"/") or p.name in ("", ".", "..")):
        raise ConfigError(key, f"{_show(text)} names a folder; give a file name")
    folder, st_folder = _nearest_existing(p.parent, key)
    name_max, path_max = _limits(folder if stat.S_ISDIR(st_folder.st_mode) else Path("."))
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > name_max:
            raise ConfigError(key, f"the name {_show(part[:40] + '…')} in {_show(text[:60] + '…')} is {n} bytes long; "
                                   f"the file system allows at most {name_max}")
    n = len(os.fsencode(p.name))
    if n + TEMP_ROOM > name_max:
        raise ConfigError(key, f"the name {_show(p.name[:40] + '…')} is {n} bytes long; at most {name_max - TEMP_ROOM} "
                               f"(the file system allows {name_max}, and an atomic write needs room for a temporary name)")
    if len(absolute) + TEMP_ROOM > path_max:
        raise ConfigError(key, f"the path {_show(text[:60] + '…')} is {len(absolute)} bytes long as an absolute path; "
                               f"at most {path_max - TEMP_ROOM} (PATH_MAX {path_max})")
    if not stat.S_ISDIR(st_folder.st_mode):
        raise ConfigError(key, f"cannot write {_show(text)}: {_show(folder)} is not a folder")
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise ConfigError(key, f"cannot use {_show(text)}: {exc.strerror or exc}") from None
    if st is not None:
        if is_dir and not stat.S_ISDIR(st.st_mode):
            raise ConfigError(key, f"{_show(text)} is a file, not a folder")
        if not is_dir and stat.S_ISDIR(st.st_mode):
            raise ConfigError(key, f"{_show(text)} is a folder; give a file name")
        if not is_dir and not stat.S_ISREG(st.st_mode):
            raise ConfigError(key, f"{_show(text)} is not a regular file (a device, pipe or socket); it is never replaced")
    for inp in inputs:
        if inp is not None and same_file(p, inp):
            what = "is an input of this command" if os.fspath(inp) == text else \
                f"is the same file as the input {_show(inp)} of this command"
            raise ConfigError(key, f"{_show(text)} {what}; an input is never overwritten (not even with --overwrite)")
    _probe(p if st is not None and is_dir else folder, key, p)
    if st is not None and not overwrite:
        if is_dir:
            _check_folder(p, kind, key)
        else:
            found = sniff(p)
            if found not in _REPLACES.get(kind, (kind,)):
                if found in FILE_KINDS:
                    what = f"is {FILE_KINDS[found]}, not {FILE_KINDS[kind]}; pass --overwrite to replace it"
                else:
                    what = ("is an empty file" if found == "empty" else "is not an mfpde output") + \
                        f"; pass --overwrite to replace it with {FILE_KINDS[kind]}"
                raise ConfigError(key, f"{_show(text)} exists and {what}, or choose another name")
    return p


def _check_folder(p: Path, kind: str, key: str) -> None:
    """An existing output folder holds nothing of another kind that the command would replace."""
    if kind == "sweep":
        idx = p / "index.json"
        if os.path.lexists(idx) and sniff(idx) != "index":
            raise ConfigError(key, f"{_show(p)} holds an {_show(idx.name)} that is not an mfpde sweep index; pass "
                                   "--overwrite to replace it, or choose another folder")
    elif kind == "sgd-checkpoints":
        try:
            entries = list(p.iterdir())
        except OSError as exc:
            raise ConfigError(key, f"cannot list {_show(p)}: {exc.strerror or exc}") from None
        for e in entries:
            if e.name.startswith(".") and e.name.endswith(".tmp"):
                continue   # the temporary file of a killed checkpoint writer
            if not (e.suffix == ".h5" and sniff(e) == "sgd-checkpoint"):
                raise ConfigError(key, f"{_show(p)} is the checkpoint folder of the run store but holds "
                                       f"{_show(e.name)}, which is not an SGD checkpoint; pass --overwrite to "
                                       "replace the folder, or choose another store name")


def check_outputs(outputs: Iterable, *, overwrite: bool = False, inputs: Iterable = ()) -> list[Path]:
    """Check every output of one command: ``outputs`` are ``(key, path, kind)`` (``path`` None:
    skipped); each is checked with :func:`check_output`, and no two are the same file."""
    inputs = [i for i in inputs if i is not None]
    checked: list[tuple[str, Path]] = []
    for key, path, kind in outputs:
        if path is None:
            continue
        p = check_output(path, kind=kind, overwrite=overwrite, inputs=inputs, key=key)
        for k0, p0 in checked:
            if same_file(p, p0):
                raise ConfigError(key, f"{_show(p)} is the same file as {k0} {_show(p0)}: give two different names")
        checked.append((key, p))
    return [p for _, p in checked]
