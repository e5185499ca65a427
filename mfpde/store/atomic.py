"""Atomic file writes and metadata checksums (Store room; the one home of both).

Every file mfpde writes (NetCDF results, run stores, SGD and solve checkpoints, sweep
indexes) is built in memory first and handed to :func:`write_bytes` as bytes, which

1. removes the temporary files that killed writers left for the same target (only those
   whose writer is dead: the name carries host and pid, :func:`clean_stale`),
2. writes the bytes with plain ``os.write`` into ``.<name>.<pid>.<host>.<token>.tmp`` in
   the target's folder, created with mode ``0o666 & ~umask``,
3. fsyncs the file, renames it over the target and fsyncs the folder,
4. removes the temporary file on any failure, ``KeyboardInterrupt`` included.

A failure is a :class:`WriteError` (a ``StoreError``; the CLI exits 1) with one line
``cannot write 'PATH': REASON``.  Because the bytes exist before the file is opened, a full
disk is a plain ``OSError`` of ``os.write`` (ENOSPC, EFBIG) and never an HDF5 library
flushing a half-written file when it is garbage-collected (which crashed the interpreter).

HDF5 stores only checksum their data (Fletcher-32, :func:`fletcher32`) and, with
``libver >= v110``, their object headers; variable-length strings live in the global heap,
which carries no checksum.  :func:`seal` therefore stores, next to the attributes of a file
or group, a marker :data:`MARKER` and a SHA-256 (:data:`DIGEST`) over a canonical
serialization of all of them as h5py reads them back; :func:`verify` checks it.  Imports
only :mod:`mfpde.errors` (numpy values are handled through their ``dtype``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any, Mapping

from mfpde.errors import StoreError

MARKER = "attrs_checksum"      # written first: "sha256"
DIGEST = "attrs_sha256"        # written last: hex digest over every other attribute
CHECKSUM_KEYS = (MARKER, DIGEST)


class WriteError(StoreError):
    """A file could not be written (full disk, no permission, …); the previous file is intact."""

    exit_status = 1


# ----------------------------------------------------------------------------- atomic writes
def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name for ``path``: ``.<name>.<pid>.<host>.<token>.tmp`` in its folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{_host()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True   # someone else's process (or an impossible pid: leave the file alone)
    return True


def clean_stale(path: str | Path) -> list[Path]:
    """Remove the temporary files of dead writers of ``path``; returns those removed.

    A temporary file of a live process (or of another host) is kept.  Names of older mfpde
    versions (``.<name>.<8 characters>.tmp``, from ``tempfile.mkstemp``) carry no pid and are
    removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    ours = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.([0-9a-f]{{6}})\.[0-9a-f]+\.tmp$")
    legacy = re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")
    removed = []
    host = _host()
    try:
        candidates = list(folder.glob(f".{_glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for p in candidates:
        m = ours.match(p.name)
        if m:
            if m.group(2) != host or _alive(int(m.group(1))):
                continue
        elif not legacy.match(p.name):
            continue
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass   # removed by another cleaner meanwhile
        except OSError:
            pass   # not ours to remove (permissions): the write itself still works
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - e.g. some network file systems
        pass
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def write_bytes(path: str | Path, data, *, what: str = "") -> Path:
    """Replace ``path`` by ``data`` (bytes-like) atomically; see the module docstring.

    ``what`` (e.g. ``"checkpoint "``) prefixes the path in the error message.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        view = memoryview(data).cast("B")
        while True:
            tmp = temp_path(path)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                break
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
        try:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:done + (1 << 24)])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
    except OSError as exc:
        raise WriteError(f"cannot write {what}{str(path)!r}: {_reason(exc)}") from None
    finally:
        if tmp is not None:   # any failure, KeyboardInterrupt included
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def write_text(path: str | Path, text: str, *, what: str = "") -> Path:
    return write_bytes(path, text.encode("utf-8"), what=what)


# ----------------------------------------------------------------------------- checksums
def fletcher32(arr) -> dict:
    """HDF5 dataset options: a Fletcher-32 checksum on every non-empty array (a flipped byte
    reads as an error, not a wrong number); scalars cannot carry filters."""
    return {"fletcher32": True} if getattr(arr, "ndim", 0) >= 1 and getattr(arr, "size", 0) > 0 else {}


def _canonical(value: Any) -> bytes:
    """Bytes that identify an attribute value as h5py reads it (type, shape and content)."""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):   # np.bytes_ too (fixed-length strings)
        return b"b" + bytes(value)
    dtype = getattr(value, "dtype", None)
    if dtype is not None and hasattr(value, "tobytes"):
        shape = repr(tuple(getattr(value, "shape", ()))).encode()
        if dtype.kind in "OUS":   # arrays of strings: by their Python values
            return b"o" + shape + json.dumps(value.tolist(), default=repr, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return b"a" + dtype.str.encode() + shape + value.tobytes()
    return b"p" + type(value).__name__.encode() + repr(value).encode("utf-8", "surrogatepass")


def digest(attrs: Mapping[str, Any]) -> str:
    """SHA-256 over every attribute except :data:`DIGEST`, in sorted key order."""
    h = hashlib.sha256()
    for k in sorted(str(k) for k in attrs):
        if k == DIGEST:
            continue
        kb, vb = k.encode("utf-8", "surrogatepass"), _canonical(attrs[k])
        h.update(len(kb).to_bytes(8, "little") + kb + len(vb).to_bytes(8, "little") + vb)
    return h.hexdigest()


def seal(attrs) -> None:
    """Add :data:`MARKER` and :data:`DIGEST` to an h5py attribute manager (file or group).

    Call it after every other attribute is set; the digest is taken over the attributes as
    h5py reads them back, so :func:`verify` sees exactly the same values.
    """
    if MARKER not in attrs:
        attrs[MARKER] = "sha256"
    attrs[DIGEST] = digest({k: attrs[k] for k in attrs if k != DIGEST})


def verify(attrs: Mapping[str, Any], where: str) -> bool:
    """Check the metadata checksum of ``attrs`` (as read by h5py); ``where`` names the file
    (and group) in the error.  Returns False for attributes written before checksums existed
    (neither marker nor digest), True if they match; a mismatch, or only one of the two,
    is a StoreError."""
    has_marker, has_digest = MARKER in attrs, DIGEST in attrs
    if not has_marker and not has_digest:
        return False
    if not (has_marker and has_digest):
        raise StoreError(f"{where}: the metadata checksum is incomplete (damaged file?)")
    stored = attrs[DIGEST]
    stored = bytes(stored).decode("ascii", "replace") if isinstance(stored, bytes) else str(stored)
    if stored != digest(attrs):
        raise StoreError(f"{where}: metadata checksum mismatch (damaged file): an attribute was changed")
    return True
