"""mfpde: the mean-field limit of wide neural networks trained by SGD, solved on quadrature rules.

The public face (:mod:`mfpde.api`): ``load(config)`` → Config, ``solve(config, **overrides)``
→ Solution, ``train(config, width, **overrides)`` → FiniteRun, plus the types ``Problem``,
``System``, ``Solution`` and the ``errors`` module.  They are imported on first use (PEP 562),
so ``import mfpde`` loads neither numpy nor numba.
"""
from __future__ import annotations

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_PUBLIC = {
    "load": ("mfpde.api", "load"),
    "solve": ("mfpde.api", "solve"),
    "train": ("mfpde.api", "train"),
    "Problem": ("mfpde.problem.model", "Problem"),
    "System": ("mfpde.system.system", "System"),
    "Solution": ("mfpde.store.solution", "Solution"),
    "errors": ("mfpde.errors", None),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'mfpde' has no attribute {name!r}") from None
    import importlib

    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
