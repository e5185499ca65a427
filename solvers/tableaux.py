"""Butcher tableaux: one type for explicit, embedded and diagonally implicit methods (Stepper room).

A :class:`ButcherTableau` is the coefficients ``a`` (s × s), ``b`` (s) and ``c`` (s) of a
Runge–Kutta method, plus optional embedded weights ``b_hat``.  Everything else is derived:
whether it is explicit (``a`` strictly lower triangular) or diagonally implicit, first same as
last, stiffly accurate, and the orders of ``b`` and ``b_hat`` (the largest p for which every
order condition Σ b_i Φ_i(τ) = 1/γ(τ) over the rooted trees τ with ≤ p nodes holds; Butcher,
*Numerical Methods for ODEs*, §31).  The three registries (``explicit.TABLEAUX``,
``adaptive.EMBEDDED_TABLEAUX``, ``implicit.DIRK_TABLEAUX``) hold tableaux of this one type;
diffrax's ``_solver/runge_kutta.py`` makes the same choice.  Imports numpy only.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

ORDER_TOL = 1e-12     # absolute tolerance of an order condition (the conditions are ≤ 1 in size)
MAX_ORDER = 8         # orders are looked for up to this (115 trees of order 8)


@functools.lru_cache(maxsize=None)
def rooted_trees(n: int) -> tuple:
    """The rooted trees with ``n`` nodes, each a sorted tuple of its subtrees (``()`` is one node)."""
    if n == 1:
        return ((),)
    return tuple(sorted(set(_forests(n - 1))))


@functools.lru_cache(maxsize=None)
def _forests(n: int) -> tuple:
    """Multisets of rooted trees with ``n`` nodes in all, each a sorted tuple."""
    if n == 0:
        return ((),)
    out = set()
    for k in range(1, n + 1):
        for t in rooted_trees(k):
            for f in _forests(n - k):
                out.add(tuple(sorted((t,) + f)))
    return tuple(sorted(out))


def _size(tree) -> int:
    return 1 + sum(_size(t) for t in tree)


def _density(tree) -> int:
    """γ(τ) = |τ| · Π γ(subtrees)."""
    return _size(tree) * math.prod(_density(t) for t in tree)


def _stage_weights(tree, a: np.ndarray) -> np.ndarray:
    """Φ_i(τ) per stage: the product over subtrees σ of (A Φ(σ))_i (ones for a single node)."""
    out = np.ones(a.shape[0])
    for t in tree:
        out = out * (a @ _stage_weights(t, a))
    return out


def order_of(weights: np.ndarray, a: np.ndarray, max_order: int = MAX_ORDER) -> int:
    """The largest p ≤ max_order such that ``weights`` satisfy every order condition up to p."""
    for p in range(1, max_order + 1):
        for tree in rooted_trees(p):
            if not math.isclose(float(weights @ _stage_weights(tree, a)), 1.0 / _density(tree), abs_tol=ORDER_TOL):
                return p - 1
    return max_order


def _array(x, ndim: int, what: str) -> np.ndarray:
    # writable on purpose: a read-only array is another Numba type (another compiled engine)
    arr = np.asarray(x, dtype=float)
    if arr.ndim != ndim:
        raise ValueError(f"tableau {what}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    """A Runge–Kutta tableau: stages k_i = f(t + c_i h, y + h Σ_j a_ij k_j), y_new = y + h Σ b_i k_i.

    ``b_hat`` (optional) are the embedded weights: the local error estimate is h Σ (b_i − b̂_i) k_i.
    ``name`` labels the tableau in registries and messages.
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    b_hat: np.ndarray | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self):
        a, b, c = _array(self.a, 2, "a"), _array(self.b, 1, "b"), _array(self.c, 1, "c")
        s = b.shape[0]
        if a.shape != (s, s) or c.shape != (s,):
            raise ValueError(f"tableau {self.name!r}: a {a.shape}, b {b.shape}, c {c.shape} do not fit {s} stages")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        if self.b_hat is not None:
            bh = _array(self.b_hat, 1, "b_hat")
            if bh.shape != (s,):
                raise ValueError(f"tableau {self.name!r}: b_hat has shape {bh.shape}, expected ({s},)")
            object.__setattr__(self, "b_hat", bh)

    @classmethod
    def from_rows(cls, a, b, b_hat=None, *, c=None, name: str = "") -> "ButcherTableau":
        """A tableau with ``c`` = the row sums of ``a`` unless given."""
        a = np.array(a, dtype=float)
        return cls(a, b, a.sum(axis=1) if c is None else c, b_hat, name)

    # ------------------------------------------------------------------ structure
    @property
    def stages(self) -> int:
        return int(self.b.shape[0])

    @property
    def explicit(self) -> bool:
        """``a`` strictly lower triangular: every stage is explicit."""
        return bool(np.all(np.triu(self.a) == 0.0))

    @property
    def diagonally_implicit(self) -> bool:
        """``a`` lower triangular and not explicit (DIRK: one implicit equation per stage)."""
        return bool(np.all(np.triu(self.a, 1) == 0.0)) and not self.explicit

    @property
    def stiffly_accurate(self) -> bool:
        """The last row of ``a`` is ``b`` (and c_s = 1): y_new is the last stage value."""
        return bool(self.c[-1] == 1.0 and np.array_equal(self.a[-1], self.b))

    @property
    def fsal(self) -> bool:
        """First same as last: stiffly accurate with an explicit first stage, so the last stage
        f(t + h, y_new) is the next step's first stage."""
        return self.stiffly_accurate and bool(np.all(self.a[0] == 0.0))

    @property
    def embedded(self) -> bool:
        return self.b_hat is not None

    @property
    def e(self) -> np.ndarray:
        """Error weights b − b̂ (an embedded tableau only)."""
        if self.b_hat is None:
            raise ValueError(f"tableau {self.name!r} has no embedded weights")
        return self.b - self.b_hat

    # ------------------------------------------------------------------ orders
    @functools.cached_property
    def order(self) -> int:
        """Order of ``b`` (from the order conditions, up to MAX_ORDER)."""
        return order_of(self.b, self.a)

    @functools.cached_property
    def embedded_order(self) -> int:
        """Order of ``b_hat``; 0 without embedded weights."""
        return 0 if self.b_hat is None else order_of(self.b_hat, self.a)


def add(registry: dict, name: str, a, b, b_hat=None, *, c=None) -> ButcherTableau:
    """``ButcherTableau.from_rows(a, b, b_hat, c=c, name=name)``, entered in ``registry`` under ``name``."""
    tb = ButcherTableau.from_rows(a, b, b_hat, c=c, name=name)
    registry[name] = tb
    return tb


__all__ = ["ButcherTableau", "add", "order_of", "rooted_trees"]
