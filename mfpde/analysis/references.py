"""Stored reference solutions, refinement studies and regression verification (Analysis room).

SPEC §6, "stored references": small canonical limit solutions kept in ``data/references/``
with their configuration, an estimated discretization error and a SHA-256 manifest.

* :func:`refinement_study` solves one configuration on a grid of refinements — every
  index-space rule (and, separately, every data rule) scaled by a factor × a time setting
  (``dt`` for fixed-step methods, ``rtol``/``atol`` for adaptive ones) — and reports
  successive differences (sup over the saved times), observed orders and an error estimate
  (:class:`Study`; ``mfpde refine``).
* :func:`build` rebuilds a reference ``NAME`` from ``DIR/NAME.toml`` (a plain mfpde
  configuration): a 3 × 3 study around the stored settings, the solution at the stored
  settings with the error estimate as attributes, written to ``DIR/NAME.nc``; then the
  manifest ``DIR/MANIFEST.sha256`` (``sha256sum`` format) is rewritten (``mfpde reference
  build``).
* :func:`verify` checks the manifest, re-solves each reference at its stored settings and
  compares the loss curve and ŷ at the probes within :func:`tolerance` of the stored
  estimate (``mfpde verify``).

Every malformed input is one clear line naming the file and the key: a manifest that is not
UTF-8 text, a line that is not ``SHA256  FILE`` (64 hex digits, a plain file name of the folder,
listed once) or a name that cannot be used is an :class:`~mfpde.errors.StoreError` /
:class:`~mfpde.errors.ConfigError`; a reference whose files agree with the manifest but are
malformed (a TOML file or ``config`` attribute that is not valid UTF-8 TOML, an
``error_estimate_*`` attribute that is not a finite number >= 0, a missing ``loss_train``) FAILs
:func:`verify` with that line as its message, before any re-solve.

Documented in ``docs/references.md``.  Imports numpy, xarray and mfpde (every solve goes
through :func:`mfpde.solve`; config and io for reading and writing).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from mfpde import checks
from mfpde.errors import ConfigError, MfpdeError, StoreError

MANIFEST = "MANIFEST.sha256"
SIZED_KINDS = ("gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "chi", "sphere_marginal", "sobol",
               "monte_carlo")
TOL_FACTOR = 10.0       # verify tolerance = max(TOL_FACTOR × stored estimate, TOL_FLOOR)
TOL_FLOOR = 1e-9
MAX_STORED_PARAMETERS = 10_000   # store the final parameters only for states this small
NORM = "sup over the saved times t of |Δ loss_train(t)| (absolute)"
NORM_YHAT = "sup over the saved times and probe points of |Δ ŷ(t, x)| (absolute)"
MAX_MANIFEST_BYTES = 1 << 20     # a manifest lists a few files: refuse anything larger before reading
MAX_TOML_BYTES = 1 << 20         # a reference configuration
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Spec:
    """Catalogue entry of a reference: what it covers and how it is refined.

    ``rule_factors`` scale every index-space and data rule size (the entry 1 is the stored
    setting); ``time_factors`` scale ``rtol`` and ``atol`` (adaptive steppers; default
    100, 1, 1/100) or ``dt`` (fixed-step ones; default 2, 1, 1/2).
    """

    name: str
    covers: str
    rule_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    time_factors: tuple[float, ...] | None = None

    def time_factors_for(self, raw: Mapping) -> tuple[float, ...]:
        if self.time_factors is not None:
            return self.time_factors
        return (100.0, 1.0, 0.01) if time_parameter(raw) == "rtol" else (2.0, 1.0, 0.5)


CATALOGUE: dict[str, Spec] = {s.name: s for s in (
    Spec("shallow_l1", "L = 1 (shallow), tanh, index c = (w_1^0, v^0) on a 2-D Gaussian trapezoid grid, "
         "population teacher law integrated by quadrature, squared loss"),
    Spec("iid_l2", "L = 2 i.i.d. initialization via [iid] (SPEC §4): W̄_2 on the product grid of "
         "(w_1^0, v^0), m_2 = 0.5, population teacher law"),
    Spec("iid_l3_collapsed", "L = 3 i.i.d. via [iid] without hidden biases: the collapsed limit of "
         "SPEC §4 (one node in the middle layer), m_2 = m_3 = 0.5"),
    Spec("correlated_l3", "L = 3 correlated embedding: kernel initial functions W_l^0 = m + s ψ(<A c, c'>) "
         "(ψ = sin, cos) on 2-D Gaussian index spaces (trapezoid × Gauss–Hermite, Gauss–Hermite tensor rules)"),
    Spec("frozen_ends_l3", "L = 3 with frozen ends ξ_1 = ξ_4 = 0 (fixed random features, "
         "Araújo–Oliveira–Yukimura); [iid] with a random middle bias b_2 (a 1-D middle index)"),
    Spec("logistic_classes", "classification: logistic loss on gaussian_classes (population law by "
         "quadrature), L = 2 (gelu, tanh), hidden bias b_1 and output bias"),
    Spec("finite_arrays", "finite training set (kind = \"arrays\", 8 points), L = 1 softplus with "
         "hidden and output biases, index (w_1^0, v^0) on a 2-D grid"),
    Spec("softmax_k3", "softmax cross-entropy with K = 3 classes on a finite one-hot data set "
         "(kind = \"arrays\", d = 2), L = 1, output bias"),
)}


def default_dir() -> Path:
    """``data/references`` of the current directory if it exists, else of the source checkout."""
    here = Path("data") / "references"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "data" / "references"


# ---------------------------------------------------------------------------- refining configs
def _scale_size(size, factor: float, key: str, grow: bool = False):
    if isinstance(size, list):
        return [_scale_size(s, factor, key, grow) for s in size]
    if isinstance(size, bool) or not isinstance(size, int):
        raise ConfigError(key, f"expected an integer rule size, got {size!r}")
    if grow:   # a refinement that always refines: at least one node more
        return max(size + 1, int(math.ceil(size * factor)))
    return max(1, int(round(size * factor)))


def scale_rule(table, factor: float, key: str, grow: bool = False):
    """A copy of a rule table with every node count scaled by ``factor`` (Smolyak: level + log2 f);
    ``grow`` (factor > 1, ``mfpde solve --accuracy``): sizes rounded up and at least + 1, a Smolyak
    level at least + 1."""
    if not isinstance(table, Mapping):
        raise ConfigError(key, "expected a rule table")
    t = dict(table)
    kind = t.get("kind", "gaussian_trapezoid")
    if checks.is_one_of(kind, SIZED_KINDS):
        t["size"] = _scale_size(t.get("size", 32), factor, f"{key}.size", grow)
    elif checks.is_one_of(kind, ("tensor",)):
        rules = t.get("rules", [])
        if not isinstance(rules, list):
            raise ConfigError(f"{key}.rules", "expected a list of rule tables")
        t["rules"] = [scale_rule(r, factor, f"{key}.rules[{i}]", grow) for i, r in enumerate(rules)]
    elif checks.is_one_of(kind, ("smolyak",)):
        level = checks.integer(t.get("level", 1), f"{key}.level")
        step = int(round(math.log2(factor)))
        t["level"] = level + max(1, step) if grow else max(1, level + step)
    return t   # user rules cannot be refined: kept as they are


def _sizes(table) -> list[int]:
    if not isinstance(table, Mapping):
        return []
    kind = table.get("kind", "gaussian_trapezoid")
    if checks.is_one_of(kind, SIZED_KINDS):
        s = table.get("size", 32)
        return [x for x in (s if isinstance(s, list) else [s]) if isinstance(x, int) and not isinstance(x, bool)]
    if checks.is_one_of(kind, ("tensor",)) and isinstance(table.get("rules"), list):
        return [n for r in table["rules"] for n in _sizes(r)]
    return []


def index_rule_tables(raw: Mapping) -> dict[str, Mapping]:
    """The index-space rule tables of a configuration, by config key."""
    if "iid" in raw:
        iid = raw["iid"]
        out = {"iid.rule": iid.get("rule", {"kind": "gaussian_trapezoid", "size": 32})}
        out.update({f"iid.rules.{k}": v for k, v in iid.get("rules", {}).items()})
        out.update({f"iid.{k}": iid[k] for k in ("radius_rule", "zeta_rule") if isinstance(iid.get(k), Mapping)})
        return out
    return {f"rules.{k}": v for k, v in raw.get("rules", {}).items()}


def data_rule_tables(raw: Mapping) -> dict[str, Mapping]:
    out = {f"data.{p}.rule": raw["data"][p]["rule"] for p in ("train", "test")
           if isinstance(raw.get("data", {}).get(p), Mapping) and "rule" in raw["data"][p]}
    out.update({f"data.{p}.radius_rule": raw["data"][p]["radius_rule"] for p in ("train", "test")
                if isinstance(raw.get("data", {}).get(p), Mapping) and isinstance(raw["data"][p].get("radius_rule"), Mapping)})
    return out


def largest_size(tables: Mapping[str, Mapping]) -> int | None:
    """The largest per-coordinate node count among rule tables (None if none is sized)."""
    sizes = [n for t in tables.values() for n in _sizes(t)]
    return max(sizes) if sizes else None


def scale_rules(raw: Mapping, index_factor: float = 1.0, data_factor: float = 1.0) -> dict:
    """A copy of ``raw`` with index-space rules scaled by ``index_factor``, data rules by ``data_factor``."""
    r = copy.deepcopy(dict(raw))
    if "iid" in r:
        iid = r["iid"] = dict(r["iid"])
        iid["rule"] = scale_rule(iid.get("rule", {"kind": "gaussian_trapezoid", "size": 32}), index_factor, "iid.rule")
        if "rules" in iid:
            iid["rules"] = {k: scale_rule(v, index_factor, f"iid.rules.{k}") for k, v in iid["rules"].items()}
        for k in ("radius_rule", "zeta_rule"):   # the SPEC §7 reduction's rules (written out when it applies)
            if isinstance(iid.get(k), Mapping):
                iid[k] = scale_rule(iid[k], index_factor, f"iid.{k}")
    elif "rules" in r:
        r["rules"] = {k: scale_rule(v, index_factor, f"rules.{k}") for k, v in r["rules"].items()}
    for p in ("train", "test"):
        part = r.get("data", {}).get(p)
        if isinstance(part, Mapping) and "rule" in part:
            r["data"][p] = dict(part)
            r["data"][p]["rule"] = scale_rule(part["rule"], data_factor, f"data.{p}.rule")
            if isinstance(part.get("radius_rule"), Mapping):
                r["data"][p]["radius_rule"] = scale_rule(part["radius_rule"], data_factor, f"data.{p}.radius_rule")
    return r


def time_parameter(raw: Mapping) -> str:
    """``"rtol"`` for adaptive steppers, ``"dt"`` for fixed-step ones."""
    from mfpde.solvers import STEPPERS

    solver = raw.get("solver", {})
    stepper = solver.get("stepper", "rk4") if isinstance(solver, Mapping) else None
    cls = STEPPERS[stepper] if checks.is_one_of(stepper, tuple(STEPPERS)) else None
    return "rtol" if getattr(cls, "adaptive", False) else "dt"


def time_value(raw: Mapping) -> float:
    s = raw.get("solver", {})
    return float(s.get("rtol", 1e-6)) if time_parameter(raw) == "rtol" else float(s.get("dt", 0.01))


def with_time(raw: Mapping, value: float) -> dict:
    """A copy of ``raw`` with the time setting (dt, or rtol with atol scaled alike) set to ``value``."""
    r = copy.deepcopy(dict(raw))
    s = r["solver"] = dict(r.get("solver", {}))
    if time_parameter(raw) == "rtol":
        old = float(s.get("rtol", 1e-6))
        s["atol"] = float(s.get("atol", 1e-9)) * value / old
        s["rtol"] = float(value)
    else:
        s["dt"] = float(value)
    return r


# ---------------------------------------------------------------------------- solving
def solve(raw: Mapping, parameters: str = "none", base_dir=None):
    """(Config, Solution) of a configuration table at its own settings (:func:`mfpde.solve`; no
    companion estimate: a refinement study is its own estimate)."""
    import mfpde

    c = mfpde.load(raw, source="<reference>", base_dir=base_dir)
    return c, mfpde.solve(c, parameters=parameters, progress=False, estimate=False)


def _sup(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


def _orders(diffs: Sequence[float], params: Sequence[float]) -> list[float]:
    """Observed orders p_k = log(D_k / D_{k+1}) / log(h_k / h_{k+1}) (h: 1/size, dt or rtol)."""
    out = []
    for k in range(len(diffs) - 1):
        d0, d1 = diffs[k], diffs[k + 1]
        ratio = params[k] / params[k + 1]
        out.append(math.log(d0 / d1) / math.log(ratio) if d0 > 0 and d1 > 0 and ratio != 1 else float("nan"))
    return out


@dataclass
class Study:
    """A refinement grid: rule levels (rows) × time settings (columns), loss and ŷ curves."""

    rule_labels: list[str]
    index_sizes: list[float]          # largest per-coordinate index-rule size per level
    data_sizes: list[float]           # largest data-rule size per level (nan: no data rule)
    time_name: str                    # "dt" or "rtol"
    time_values: list[float]
    times: np.ndarray
    loss: np.ndarray                  # [R, T, n_times]
    yhat: np.ndarray | None           # [R, T, n_times, P, K]
    wall: np.ndarray                  # [R, T] seconds
    steps: np.ndarray                 # [R, T]
    reference: tuple[int, int] | None = None   # the stored level (references), else None
    notes: list[str] = field(default_factory=list)

    # successive differences along one axis, sup over saved times (and probes)
    def rule_differences(self, j: int, what: str = "loss") -> list[float]:
        a = self.loss if what == "loss" else self.yhat
        return [_sup(a[i, j], a[i + 1, j]) for i in range(a.shape[0] - 1)] if a is not None else []

    def time_differences(self, i: int, what: str = "loss") -> list[float]:
        a = self.loss if what == "loss" else self.yhat
        return [_sup(a[i, j], a[i, j + 1]) for j in range(a.shape[1] - 1)] if a is not None else []

    def rule_orders(self, j: int) -> list[float]:
        return _orders(self.rule_differences(j), [1.0 / s for s in self.index_sizes])

    def time_orders(self, i: int) -> list[float]:
        return _orders(self.time_differences(i), self.time_values)

    def estimate(self, i: int | None = None, j: int | None = None) -> dict[str, float]:
        """Error estimate of level (i, j): difference to the next finer rule level plus to the next
        finer time setting (the finest level (default) uses the difference to the previous one,
        which over-estimates its error while the differences shrink)."""
        R, T = self.loss.shape[:2]
        i = R - 1 if i is None else i
        j = T - 1 if j is None else j
        out = {}
        for what in ("loss", "yhat"):
            if what == "yhat" and self.yhat is None:
                continue
            a = self.loss if what == "loss" else self.yhat
            rule = _sup(a[i, j], a[i + 1, j]) if i + 1 < R else (_sup(a[i - 1, j], a[i, j]) if R > 1 else float("nan"))
            tim = _sup(a[i, j], a[i, j + 1]) if j + 1 < T else (_sup(a[i, j - 1], a[i, j]) if T > 1 else float("nan"))
            out[f"{what}_rule"], out[f"{what}_time"] = rule, tim
            out[what] = float(np.nansum([rule, tim]))
            if i + 1 < R and j + 1 < T:
                out[f"{what}_joint"] = _sup(a[i, j], a[i + 1, j + 1])
        return out

    def table(self) -> str:
        """The refinement table as text: loss at t_end per level, differences and orders."""
        R, T = self.loss.shape[:2]
        w = max(len(s) for s in self.rule_labels) + 2
        lines = [f"loss_train at t_end = {self.times[-1]:g}  (rows: rule sizes; columns: {self.time_name})",
                 " " * w + "".join(f"{self.time_name + '=' + format(v, '.3g'):<19}" for v in self.time_values)]
        for i in range(R):
            mark = lambda j: "*" if self.reference == (i, j) else " "
            lines.append(f"{self.rule_labels[i]:<{w}}" + "".join(f"{f'{self.loss[i, j, -1]:.13f}' + mark(j):<19}" for j in range(T)))
        jr = self.reference[1] if self.reference else T - 1
        ir = self.reference[0] if self.reference else R - 1
        lines.append(f"rule refinement at {self.time_name} = {self.time_values[jr]:g}   (Δ = {NORM}; order = log(Δ_k/Δ_k+1)/log(N_k+1/N_k))")
        lines.append(f"  {'sizes':<{2 * w}}{'Δ loss':>12}{'Δ ŷ':>12}{'order':>9}")
        dl, dy, po = self.rule_differences(jr), self.rule_differences(jr, "yhat"), self.rule_orders(jr)
        for k in range(R - 1):
            lab = f"{self.rule_labels[k]} → {self.rule_labels[k + 1]}"
            lines.append(f"  {lab:<{2 * w}}{dl[k]:>12.2e}{(dy[k] if dy else float('nan')):>12.2e}"
                         + (f"{po[k - 1]:>9.2f}" if k >= 1 else f"{'':>9}"))
        lines.append(f"time refinement at {self.rule_labels[ir]}   (order = log(Δ_k/Δ_k+1)/log({self.time_name}_k/{self.time_name}_k+1))")
        lines.append(f"  {self.time_name + ' values':<{2 * w}}{'Δ loss':>12}{'Δ ŷ':>12}{'order':>9}")
        dl, dy, po = self.time_differences(ir), self.time_differences(ir, "yhat"), self.time_orders(ir)
        for k in range(T - 1):
            lab = f"{self.time_values[k]:g} → {self.time_values[k + 1]:g}"
            lines.append(f"  {lab:<{2 * w}}{dl[k]:>12.2e}{(dy[k] if dy else float('nan')):>12.2e}"
                         + (f"{po[k - 1]:>9.2f}" if k >= 1 else f"{'':>9}"))
        est = self.estimate(*(self.reference or (None, None)))
        where = "the stored level (*)" if self.reference else "the finest level"
        lines.append(f"error estimate at {where}: loss {est['loss']:.2e} (rule {est['loss_rule']:.2e} + time "
                     f"{est['loss_time']:.2e})" + (f", ŷ {est['yhat']:.2e}" if "yhat" in est else "")
                     + ("" if "loss_joint" not in est else f"; joint difference {est['loss_joint']:.2e}"))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_xarray(self):
        """The table as a dataset: dims ``refine_rule``, ``refine_time``, ``time`` (+ probe, output)."""
        import xarray as xr

        R, T = self.loss.shape[:2]
        coords = {"refine_rule": ("refine_rule", np.arange(R)), "refine_time": ("refine_time", np.arange(T)),
                  "time": ("time", self.times),
                  "refine_rule_label": ("refine_rule", np.array(self.rule_labels, dtype=object)),
                  "refine_index_size": ("refine_rule", np.asarray(self.index_sizes, float),
                                        {"long_name": "largest per-coordinate node count of the index-space rules"}),
                  "refine_data_size": ("refine_rule", np.asarray(self.data_sizes, float),
                                       {"long_name": "largest per-coordinate node count of the data rules (nan: none)"}),
                  f"refine_{self.time_name}": ("refine_time", np.asarray(self.time_values, float))}
        jr = self.reference[1] if self.reference else T - 1
        ir = self.reference[0] if self.reference else R - 1
        dv = {"refine_loss_train": (("refine_rule", "refine_time", "time"), self.loss,
                                    {"long_name": "loss_train of every refinement level"}),
              "refine_wall_seconds": (("refine_rule", "refine_time"), self.wall),
              "refine_steps": (("refine_rule", "refine_time"), self.steps),
              "rule_difference_loss": ("refine_rule_step", np.asarray(self.rule_differences(jr), float),
                                       {"long_name": f"rule level k → k+1 at {self.time_name} = {self.time_values[jr]:g}; {NORM}"}),
              "rule_order": ("refine_rule_order", np.asarray(self.rule_orders(jr), float)),
              "time_difference_loss": ("refine_time_step", np.asarray(self.time_differences(ir), float),
                                       {"long_name": f"time level k → k+1 at rule level {self.rule_labels[ir]}; {NORM}"}),
              "time_order": ("refine_time_order", np.asarray(self.time_orders(ir), float))}
        if self.yhat is not None:
            dv["refine_yhat_probe"] = (("refine_rule", "refine_time", "time", "probe", "output"), self.yhat)
        est = self.estimate(*(self.reference or (None, None)))
        attrs = {"refine_time_parameter": self.time_name, "refine_norm": NORM,
                 **{f"refine_error_estimate_{k}": v for k, v in est.items()}}
        return xr.Dataset(dv, coords=coords, attrs=attrs)


def _label(raw: Mapping) -> tuple[str, float, float]:
    idx, dat = largest_size(index_rule_tables(raw)), largest_size(data_rule_tables(raw))
    sizes = [str(_sizes(t)) if len(_sizes(t)) > 1 else str(_sizes(t)[0]) for t in index_rule_tables(raw).values() if _sizes(t)]
    label = "Q=" + ",".join(dict.fromkeys(sizes)) + (f" data={dat}" if dat else "")
    return label.replace(" ", "").replace("data=", " data="), float(idx or math.nan), float(dat or math.nan)


def refinement_study(raw: Mapping, index_factors: Sequence[float] = (1.0,), data_factors: Sequence[float] | None = None,
                     time_values: Sequence[float] | None = None, *, base_dir=None,
                     say: Callable[[str], None] = lambda s: None, reference: tuple[int, int] | None = None) -> Study:
    """Solve ``raw`` at every (rule level, time setting); rule level k scales the index rules by
    ``index_factors[k]`` and the data rules by ``data_factors[k]`` (default: the same factors)."""
    data_factors = list(index_factors) if data_factors is None else list(data_factors)
    if len(data_factors) != len(index_factors):
        raise ConfigError("--data-sizes", f"needs one entry per rule size ({len(index_factors)}), got {len(data_factors)}")
    time_values = [time_value(raw)] if not time_values else [float(v) for v in time_values]
    levels = [scale_rules(raw, fi, fd) for fi, fd in zip(index_factors, data_factors)]
    labels, isz, dsz = zip(*(_label(r) for r in levels))
    loss, yhat, wall, steps, times = [], [], [], [], None
    for i, r in enumerate(levels):
        lrow, yrow, wrow, srow = [], [], [], []
        for v in time_values:
            t0 = time.perf_counter()
            _, sol = solve(with_time(r, v), base_dir=base_dir)
            wrow.append(time.perf_counter() - t0)
            srow.append(sol.stats.get("steps", 0))
            lrow.append(sol.observable("loss_train"))
            yrow.append(sol.observable("yhat_probe") if "yhat_probe" in sol.observables else None)
            if times is None:
                times = np.asarray(sol.times, float)
            say(f"  {labels[i]:<28} {time_parameter(raw)}={v:<9.3g} loss(t_end)={lrow[-1][-1]:.13f}  "
                f"{srow[-1]} steps, {wrow[-1]:.2f} s")
        loss.append(lrow), yhat.append(yrow), wall.append(wrow), steps.append(srow)
    has_y = yhat[0][0] is not None
    notes = []
    if len(set(labels)) < len(labels):
        notes.append("some rule levels coincide (user or unsized rules cannot be refined)")
    return Study(list(labels), list(isz), list(dsz), time_parameter(raw), list(time_values), times, np.asarray(loss),
                 np.asarray(yhat) if has_y else None, np.asarray(wall), np.asarray(steps), reference, notes)


def _numbers(text: str | None, key: str, integer: bool = False) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [int(s) if integer else float(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(key, f"expected comma-separated {'integers' if integer else 'numbers'}, got {text!r}") from None
    if not vals or any(not (v > 0 and math.isfinite(v)) for v in vals):
        raise ConfigError(key, f"expected positive values, got {text!r}")
    return vals


def refine(config_path, rule_sizes: str, data_sizes: str | None = None, dt: str | None = None, rtol: str | None = None,
           output=None, say: Callable[[str], None] = print) -> tuple[Study, Path]:
    """``mfpde refine``: a refinement study of a configuration file; writes the table as NetCDF.

    ``rule_sizes`` are the largest per-coordinate index-rule sizes (every other index-rule size
    is scaled by the same factor); ``data_sizes`` likewise for the data rules (default: kept);
    ``dt`` (fixed-step steppers) or ``rtol`` (adaptive ones) the time settings."""
    from mfpde.problem import config as cfg_mod
    from mfpde.store import netcdf as io

    c = cfg_mod.load(config_path)
    raw = c.raw
    sizes = _numbers(rule_sizes, "--rule-sizes", integer=True)
    n0 = largest_size(index_rule_tables(raw))
    if n0 is None:
        raise ConfigError("--rule-sizes", f"{config_path}: no index-space rule with a size to refine (user/smolyak rules only)")
    index_factors = [n / n0 for n in sizes]
    dsizes = _numbers(data_sizes, "--data-sizes", integer=True)
    if dsizes is not None:
        d0 = largest_size(data_rule_tables(raw))
        if d0 is None:
            raise ConfigError("--data-sizes", f"{config_path}: the data laws have no quadrature rule to refine")
        if len(dsizes) != len(sizes):
            raise ConfigError("--data-sizes", f"needs one entry per rule size ({len(sizes)}), got {len(dsizes)}")
        data_factors = [n / d0 for n in dsizes]
    else:
        data_factors = [1.0] * len(sizes)
    tname = time_parameter(raw)
    if dt is not None and tname == "rtol":
        raise ConfigError("--dt", f"stepper {c.solver.stepper!r} is adaptive: refine it with --rtol")
    if rtol is not None and tname == "dt":
        raise ConfigError("--rtol", f"stepper {c.solver.stepper!r} has a fixed step: refine it with --dt")
    times = _numbers(dt if tname == "dt" else rtol, f"--{tname}")
    base = Path(config_path).parent
    say(f"mfpde: refinement study of {c.problem.name!r}: {len(sizes)} rule levels × {len(times or [1])} {tname} values")
    study = refinement_study(raw, index_factors, data_factors, times, base_dir=base, say=say)
    if dsizes is None and data_rule_tables(raw):
        study.notes.append("data rules kept as configured (give --data-sizes to refine them too)")
    ds = study.to_xarray()
    from mfpde.checks import to_toml

    ds.attrs.update({"title": f"mfpde refinement study: {c.problem.name}", "config": to_toml(raw),
                     "refine_rule_sizes": json.dumps(sizes), "refine_data_sizes": json.dumps(dsizes)})
    out = io.write(ds, output or f"{c.problem.name}_refine.nc")
    return study, out


# ---------------------------------------------------------------------------- references
def tolerance(estimate: float) -> float:
    """Verify tolerance from a stored error estimate: max(10 × estimate, 1e-9) (docs/references.md)."""
    if isinstance(estimate, (bool, np.bool_)) or not isinstance(estimate, numbers.Real):
        raise ConfigError("error_estimate", f"expected a number, got {estimate!r}")
    estimate = float(estimate)
    return max(TOL_FACTOR * estimate, TOL_FLOOR) if math.isfinite(estimate) else TOL_FLOOR


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: Path) -> dict[str, str]:
    """{file name: sha256} from ``DIR/MANIFEST.sha256`` (``sha256sum`` format)."""
    path = Path(directory) / MANIFEST
    text = _read_text(path, MAX_MANIFEST_BYTES, missing=f"no manifest {str(path)!r}: run `mfpde reference build` "
                                                        f"(or give --dir)")
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not _DIGEST.fullmatch(parts[0]):
            raise StoreError(f"{str(path)!r} line {n}: expected 'SHA256  FILE' (64 hex digits, two spaces, "
                             f"a file name), got {line[:200]!r}")
        fname = parts[1].lstrip("*").strip()
        if not fname or fname in (".", "..") or any(c in fname for c in "/\\\0") or not fname.isprintable():
            raise StoreError(f"{str(path)!r} line {n}: expected a file name of this folder, got {fname[:200]!r}")
        if fname in out:
            raise StoreError(f"{str(path)!r} line {n}: {fname!r} is listed a second time")
        out[fname] = parts[0].lower()
    return out


def _read_text(path: Path, limit: int, missing: str | None = None) -> str:
    """The UTF-8 text of a small file; StoreError naming it if absent (``missing``), too large or unreadable."""
    try:
        if missing is not None and not path.is_file():
            raise StoreError(missing)
        size = path.stat().st_size
        if size > limit:
            raise StoreError(f"{str(path)!r} has {size} bytes, more than the {limit} a reference file may have")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{str(path)!r} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    except (OSError, ValueError) as exc:   # a name too long, a NUL byte, no permission, ...
        raise StoreError(f"cannot read {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None


def _toml(text: str, source: str) -> dict:
    """Parsed TOML; StoreError naming ``source`` if it is not valid TOML."""
    try:
        return checks.parse_toml(text, source)
    except ConfigError as exc:
        raise StoreError(str(exc)) from None


def _estimate(ds, key: str, nc: Path) -> float:
    """The stored error estimate ``key``: a finite number >= 0, else StoreError naming the file and key."""
    v = ds.attrs.get(key)
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise StoreError(f"{nc}: attribute {key} must be a finite number >= 0, got {v!r} (rebuild the reference)")
    return float(v)


def write_manifest(directory: Path) -> Path:
    """Rewrite ``DIR/MANIFEST.sha256`` over every ``*.nc`` and ``*.toml`` file of the folder."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".nc", ".toml"))
    text = "".join(f"{sha256(p)}  {p.name}\n" for p in files)
    from mfpde.store import atomic

    return atomic.write_text(directory / MANIFEST, text, what="reference manifest ")


def names_in(directory: Path) -> list[str]:
    """Reference names of a folder: the ``*.toml`` files (build) or ``*.nc`` files."""
    directory = Path(directory)
    return sorted({p.stem for p in directory.glob("*.nc")} | {p.stem for p in directory.glob("*.toml")})


def build(name: str, directory: Path | str | None = None, say: Callable[[str], None] = print) -> Path:
    """Rebuild reference ``name`` from ``DIR/NAME.toml``: study, estimate, write ``DIR/NAME.nc``."""
    from mfpde.problem import config as cfg_mod
    from mfpde.store import netcdf as io

    directory = Path(directory or default_dir())
    src = directory / f"{name}.toml"
    try:
        found = src.is_file()
    except (OSError, ValueError) as exc:
        raise ConfigError("reference", f"cannot use {str(src)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not found:
        raise ConfigError("reference", f"no configuration {str(src)!r} (known: {', '.join(names_in(directory)) or 'none'})")
    text = _read_text(src, MAX_TOML_BYTES)
    raw = cfg_mod.loads(text, str(src), directory).raw
    spec = CATALOGUE.get(name, Spec(name, text.splitlines()[0].lstrip("# ") if text else name))
    tfac = spec.time_factors_for(raw)
    if 1.0 not in spec.rule_factors or 1.0 not in tfac:
        raise ConfigError("reference", f"{name}: the refinement factors must contain 1 (the stored setting)")
    i0, j0 = list(spec.rule_factors).index(1.0), list(tfac).index(1.0)
    tv = [time_value(raw) * f for f in tfac]
    say(f"reference {name}: {spec.covers}")
    study = refinement_study(raw, spec.rule_factors, None, tv, base_dir=directory, say=say, reference=(i0, j0))
    t0 = time.perf_counter()
    c, sol = solve(raw, parameters="final", base_dir=directory)
    wall = time.perf_counter() - t0
    if not np.array_equal(sol.observable("loss_train"), study.loss[i0, j0]):
        raise MfpdeError(f"{name}: the stored-level solve is not reproducible (differs from the study's run)")
    est = study.estimate(i0, j0)
    ds = sol.to_xarray()
    if sol.system.size > MAX_STORED_PARAMETERS:   # keep the file small: observables only
        ds = ds.drop_vars([v for v in ds.data_vars if "state_time" in ds[v].dims] + ["state_time"], errors="ignore")
    ds = ds.merge(study.to_xarray(), combine_attrs="override")
    for k in [k for k in ds.attrs if k.startswith("error_estimate_")]:   # the solve's (switched off) companion estimate
        del ds.attrs[k]
    ds.attrs.update({
        "reference_name": name, "reference_covers": spec.covers, "config_source": text,
        "error_estimate_status": "ok", "error_estimate_loss": est["loss"], "error_estimate_loss_rule": est["loss_rule"],
        "error_estimate_loss_time": est["loss_time"], "error_estimate_loss_joint": est.get("loss_joint", math.nan),
        "error_estimate_yhat": est.get("yhat", math.nan), "error_estimate_yhat_rule": est.get("yhat_rule", math.nan),
        "error_estimate_yhat_time": est.get("yhat_time", math.nan),
        "error_estimate_norm": NORM, "error_estimate_norm_yhat": NORM_YHAT,
        "error_estimate_method": (
            "difference to the next refinement, summed over the two directions: rules (every index-space and data "
            f"rule size × {spec.rule_factors[i0 + 1] if i0 + 1 < len(spec.rule_factors) else math.nan:g}) at the stored "
            f"{study.time_name}, plus {study.time_name} × "
            f"{tfac[j0 + 1] if j0 + 1 < len(tfac) else math.nan:g} at the stored rules"),
        "verify_tolerance_loss": tolerance(est["loss"]),
        "verify_tolerance_yhat": tolerance(est.get("yhat", 0.0)),
        "verify_tolerance_rule": f"max({TOL_FACTOR:g} × error estimate, {TOL_FLOOR:g})",
        "reference_solve_seconds": wall,
    })
    out = io.write(ds, directory / f"{name}.nc")
    os.chmod(out, 0o644)   # a data file of the repository, not a private temporary
    say(study.table())
    say(f"reference {name}: wrote {out} ({out.stat().st_size / 1024:.0f} kB), error estimate (loss) "
        f"{est['loss']:.2e}, solve {wall:.2f} s")
    return out


def build_all(names: Sequence[str] | None = None, directory: Path | str | None = None,
              say: Callable[[str], None] = print) -> list[Path]:
    directory = Path(directory or default_dir())
    names = list(names or []) or sorted(p.stem for p in directory.glob("*.toml"))
    if not names:
        raise ConfigError("reference", f"no *.toml configurations in {str(directory)!r}")
    out = [build(n, directory, say) for n in names]
    say(f"wrote {write_manifest(directory)}")
    return out


# ---------------------------------------------------------------------------- verification
@dataclass
class Check:
    name: str
    ok: bool
    dev_loss: float = math.nan
    tol_loss: float = math.nan
    dev_yhat: float = math.nan
    tol_yhat: float = math.nan
    message: str = ""
    seconds: float = 0.0


def _resolve(refs: Sequence[str], directory: Path) -> list[tuple[str, Path]]:
    out = []
    for r in refs:
        checks.string(r, "reference")
        try:
            p = Path(r)
            as_file = p.suffix == ".nc" and p.exists()
            in_dir = not as_file and ((directory / f"{r}.nc").exists() or (directory / f"{r}.toml").exists())
        except (OSError, ValueError) as exc:   # a name too long, a NUL byte
            raise ConfigError("reference", f"cannot use {r!r}: {getattr(exc, 'strerror', None) or exc}") from None
        if as_file:
            out.append((p.stem, p.parent))
        elif in_dir:
            out.append((r, directory))
        else:
            raise ConfigError("reference", f"unknown reference {r!r}: no {str(directory / (r + '.nc'))!r} "
                              f"(known: {', '.join(names_in(directory)) or 'none'})")
    return out


def check_one(name: str, directory: Path, manifest: Mapping[str, str]) -> Check:
    """Manifest, configuration consistency, re-solve and comparison of one reference."""
    from mfpde.store import netcdf as io

    t0 = time.perf_counter()
    for fname in (f"{name}.nc", f"{name}.toml"):
        path = directory / fname
        if fname not in manifest:
            return Check(name, False, message=f"{path} is not listed in the manifest {directory / MANIFEST}")
        try:
            if not path.is_file():
                return Check(name, False, message=f"{path} is listed in the manifest but missing")
            digest = sha256(path)
        except OSError as exc:
            return Check(name, False, message=f"{path} cannot be read: {exc.strerror or exc}")
        if digest != manifest[fname]:
            return Check(name, False, message=f"{path} has changed: its SHA-256 does not match the manifest")
    nc, toml = directory / f"{name}.nc", directory / f"{name}.toml"
    ds = io.read(nc)
    if "error_estimate_loss" not in ds.attrs or ds.attrs.get("status") != "completed":
        return Check(name, False, message=f"{nc} is not a completed reference (rebuild it)")
    # everything verify reads is checked before the re-solve
    config_text = ds.attrs.get("config")
    if not isinstance(config_text, str):
        raise StoreError(f"{nc}: attribute config is missing or not text (rebuild the reference)")
    stored_raw = _toml(config_text, f"{nc}: attribute config")
    if "time" not in ds.coords or "loss_train" not in ds.data_vars or tuple(ds["loss_train"].dims) != ("time",):
        raise StoreError(f"{nc}: no loss_train over time (rebuild the reference)")
    tol_l = tolerance(_estimate(ds, "error_estimate_loss", nc))
    tol_y = tolerance(_estimate(ds, "error_estimate_yhat", nc)) if "yhat_probe" in ds.data_vars else math.nan
    if _toml(_read_text(toml, MAX_TOML_BYTES), str(toml)) != stored_raw:
        return Check(name, False, message=f"{toml} differs from the config stored in {name}.nc")
    try:
        _, sol = solve(stored_raw, base_dir=directory)
    except MfpdeError as exc:
        return Check(name, False, message=f"re-solve failed: {exc}")
    if not np.array_equal(np.asarray(sol.times), ds["time"].values):
        return Check(name, False, message="the re-solve saved at different times")
    if np.shape(sol.observable("loss_train")) != ds["loss_train"].shape:
        return Check(name, False, message=f"{nc}: loss_train has shape {ds['loss_train'].shape}, the re-solve's "
                                          f"{np.shape(sol.observable('loss_train'))}")
    dev_l = _sup(sol.observable("loss_train"), ds["loss_train"].values)
    dev_y = math.nan
    if "yhat_probe" in ds.data_vars:
        if "yhat_probe" not in sol.observables or np.shape(sol.observable("yhat_probe")) != ds["yhat_probe"].shape:
            return Check(name, False, message=f"{nc}: yhat_probe does not match the re-solve's probes (shape)")
        dev_y = _sup(sol.observable("yhat_probe"), ds["yhat_probe"].values)
    ok = bool(dev_l <= tol_l and (math.isnan(dev_y) or dev_y <= tol_y))
    return Check(name, ok, dev_l, tol_l, dev_y, tol_y, "" if ok else "deviation above tolerance",
                 time.perf_counter() - t0)


def verify(refs: Sequence[str] = (), directory: Path | str | None = None) -> list[Check]:
    """Verify references (default: every ``*.nc`` of the folder and every manifest entry)."""
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise ConfigError("--dir", f"expected a folder path, got {type(directory).__name__}")
    directory = Path(directory or default_dir())
    try:
        is_dir = directory.is_dir()
    except (OSError, ValueError) as exc:   # a name too long, a NUL byte
        raise ConfigError("--dir", f"cannot use {str(directory)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not is_dir:
        raise ConfigError("--dir", f"{str(directory)!r} is not a folder")
    if isinstance(refs, str):
        refs = [refs]
    manifest = read_manifest(directory)
    if refs:
        targets = _resolve(refs, directory)
    else:
        names = {p.stem for p in directory.glob("*.nc")} | {Path(f).stem for f in manifest if f.endswith(".nc")}
        targets = [(n, directory) for n in sorted(names)]
        if not targets:
            raise ConfigError("reference", f"no references in {str(directory)!r}")
    results = []
    for name, d in targets:
        man = manifest if d.resolve() == directory.resolve() else read_manifest(d)
        try:
            results.append(check_one(name, d, man))
        except MfpdeError as exc:   # a damaged or malformed reference fails; the others are still verified
            results.append(Check(name, False, message=str(exc).replace("\n", " ")))
    return results


def verify_table(results: Sequence[Check]) -> str:
    w = max([len(r.name) for r in results] + [9])
    lines = [f"{'reference':<{w}}  {'max |Δ loss|':>12}  {'tol loss':>9}  {'max |Δ ŷ|':>10}  {'tol ŷ':>9}  {'time':>6}  result"]
    for r in results:
        lines.append(f"{r.name:<{w}}  {r.dev_loss:>12.2e}  {r.tol_loss:>9.1e}  {r.dev_yhat:>10.2e}  {r.tol_yhat:>9.1e}  "
                     f"{r.seconds:>5.2f}s  {'pass' if r.ok else 'FAIL'}" + (f"  ({r.message})" if r.message else ""))
    n_fail = sum(not r.ok for r in results)
    lines.append(f"{len(results) - n_fail} passed, {n_fail} failed"
                 + f"  (tolerance = max({TOL_FACTOR:g} × stored error estimate, {TOL_FLOOR:g}), absolute)")
    return "\n".join(lines)
