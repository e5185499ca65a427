"""Fuzzing: malformed configurations, command lines and API arguments get the project's own
error (a ConfigError naming the key, or another MfpdeError) — never any other exception.

Configurations start from the embedded default and every example, then 1–4 random
mutations: wrong types, missing and unknown keys, out-of-range values, NaN/inf, huge sizes,
wrong nesting (tables turned into lists, lists into tables, subtrees moved elsewhere).
Every mutated configuration either builds (Problem and System) or raises MfpdeError; huge
sizes must be refused before anything is allocated (each example has a deadline).
"""
import copy
import math
import shutil
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from fuzzing import FUZZ, budget, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from mfpde import finite

from mfpde.problem import config

from mfpde.problem import data

from mfpde.problem import embedding

from mfpde.problem import iid

from mfpde.problem import quadrature

from mfpde.problem import schedules
from mfpde.cli import main
from mfpde.errors import ConfigError, MfpdeError
from mfpde.system.system import System

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml") if p.name != "sweep_widths.toml")
BASES = [("default", tomllib.loads(config.default_text()))] + [(p.name, tomllib.loads(p.read_text())) for p in EXAMPLES]


def _keys(v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(k)
            _keys(x, out)
    elif isinstance(v, list):
        for x in v:
            _keys(x, out)
    return out


KNOWN_KEYS = sorted(_keys([b for _, b in BASES], set()) | {
    "kind", "size", "dim", "mean", "std", "low", "high", "seed", "law", "level", "base", "rules", "nodes",
    "weights", "tracers", "scramble", "half_width", "value", "start", "noise_std", "m", "s", "psi", "A",
    "xi0", "tau", "p", "times", "values", "sample", "rule", "teacher", "direction", "scale", "width",
    "activation", "output_dim", "x", "y", "path", "x_key", "y_key", "y_columns", "tau_pos", "tau_neg",
    "p_pos", "input_std", "save_times", "save_every", "bound", "rtol", "atol", "dt0", "dt_min", "dt_max",
    "max_rejections", "fixed_dt", "batch", "lr", "widths", "replicas", "statistics", "coupling", "W", "b",
    "layer_1", "layer_2", "layer_3", "layer_4", "bias_1", "default", "w_1", "W_2", "W_3", "v", "b_1", "b_out",
})
WORDS = ["tanh", "relu", "identity", "gauss_hermite", "gauss_legendre", "gaussian_trapezoid", "tensor", "smolyak",
         "sobol", "monte_carlo", "user", "teacher", "gaussian_classes", "arrays", "file", "grid", "normal",
         "uniform", "constant", "coordinate", "affine", "quantile", "kernel", "power", "piecewise", "full",
         "online", "minibatch", "rk4", "euler", "dopri5", "all", "none", "final", "squared", "logistic",
         "single_index_tanh", "two_layer", "", "x", "data.npz", "missing.csv", "."]
HUGE = [10**9, 10**9, 10**12, 2**31, 2**62, 2**63 - 1, 2**63, 10**30, -(2**63), 1e9, 1e15, 1e300]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e-300, -1.0, 0.5, 1.5, 1e300, -1e300]

scalars = st.one_of(
    st.booleans(),
    st.integers(-5, 80),
    st.sampled_from(HUGE),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(max_size=6),
)
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=4), inner, max_size=3),
), max_leaves=8)


def _containers(v, path=()):
    """Every (path, container) of a nested config."""
    yield path, v
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        if isinstance(x, (dict, list)):
            yield from _containers(x, path + (k,))


def _get(v, path):
    for k in path:
        v = v[k]
    return v


def _mutate(draw, cfg):
    places = list(_containers(cfg))
    path, box = draw(st.sampled_from(places))
    keys = list(box) if isinstance(box, dict) else list(range(len(box)))
    op = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap", "unwrap", "huge", "special",
                               "retable", "move", "negate", "typed", "typed", "typed"]))
    if op == "add" or not keys:
        if isinstance(box, dict):
            box[draw(st.sampled_from(KNOWN_KEYS) | st.text(max_size=5))] = draw(junk)
        else:
            box.append(draw(junk))
        return
    k = draw(st.sampled_from(keys))
    old = box[k]
    if op == "replace":
        box[k] = draw(junk)
    elif op == "delete":
        del box[k]
    elif op == "wrap":
        box[k] = [old]
    elif op == "unwrap":
        box[k] = old[0] if isinstance(old, list) and old else next(iter(old.values())) if isinstance(old, dict) and old else old
    elif op == "huge":
        box[k] = draw(st.sampled_from(HUGE)) if not isinstance(old, list) else [draw(st.sampled_from(HUGE))] * max(1, len(old))
    elif op == "special":
        box[k] = draw(st.sampled_from(SPECIAL_FLOATS))
    elif op == "retable":   # a table becomes a list of its values, a list a table
        box[k] = list(old.values()) if isinstance(old, dict) else {str(i): x for i, x in enumerate(old)} \
            if isinstance(old, list) else {"value": old}
    elif op == "move":      # a subtree lands elsewhere (wrong nesting)
        dest_path, dest = draw(st.sampled_from(places))
        if isinstance(dest, dict):
            dest[draw(st.sampled_from(KNOWN_KEYS))] = copy.deepcopy(old)
        else:
            dest.append(copy.deepcopy(old))
    elif op == "typed":     # same type, other value: gets past the type checks into ranges and consistency
        if isinstance(old, bool):
            box[k] = not old
        elif isinstance(old, int):
            box[k] = draw(st.integers(-3, 70) | st.sampled_from(HUGE[:9]))
        elif isinstance(old, float):
            box[k] = draw(st.floats(-1e3, 1e3) | st.sampled_from(SPECIAL_FLOATS))
        elif isinstance(old, str):
            box[k] = draw(st.sampled_from(WORDS))
        elif isinstance(old, list):
            box[k] = old[:draw(st.integers(0, len(old)))] + old[:draw(st.integers(0, 2))]
        else:
            box[k] = {kk: vv for kk, vv in old.items() if draw(st.booleans())}
    elif op == "negate":
        if isinstance(old, (int, float)) and not isinstance(old, bool):
            box[k] = -old if old else -1
        else:
            box[k] = draw(st.sampled_from([-1, 0, -0.5]))


@st.composite
def malformed_configs(draw):
    name, base = draw(st.sampled_from(BASES))
    cfg = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        _mutate(draw, cfg)
    return name, cfg


def _check_error(exc: BaseException):
    assert isinstance(exc, MfpdeError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert msg and "\n" not in msg.strip() or isinstance(exc, ConfigError), msg
    if isinstance(exc, ConfigError):
        assert isinstance(exc.key, str) and exc.key, f"ConfigError without a key: {msg}"
        assert msg.startswith(exc.key), msg


N_CONFIGS = 6000         # make test (derandomized)
N_CONFIGS_FUZZ = 20000   # make fuzz (random seed), times MFPDE_FUZZ_SCALE


@pytest.mark.hypothesis   # an inner @given: selected by make fuzz (-m hypothesis)
def test_malformed_configs_build_or_raise_a_config_error_naming_the_key():
    import resource

    count = {"configs": 0, "built": 0, "slowest": 0.0}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @fuzz_settings(N_CONFIGS, N_CONFIGS_FUZZ, all_health_checks_off=True)
    @given(malformed_configs())
    def check(case):
        name, cfg = case
        count["configs"] += 1
        t0 = time.perf_counter()
        try:
            with np.errstate(all="ignore"):
                c = config.from_dict(cfg, source=name, base_dir=ROOT / "examples")
                System(c.problem)
        except Exception as exc:  # noqa: BLE001 - the point: which exceptions escape
            _check_error(exc)
        else:
            count["built"] += 1
        count["slowest"] = max(count["slowest"], time.perf_counter() - t0)

    check()
    # thousands of configurations, both outcomes, and huge sizes refused before allocating:
    # no example took long and memory never grew by more than 1 GB
    assert count["configs"] >= budget(N_CONFIGS, N_CONFIGS_FUZZ) * 0.9, count
    assert 0.02 * count["configs"] < count["built"] < 0.5 * count["configs"], count
    assert count["slowest"] < 20.0, count
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 1_000_000, "kB"


# --------------------------------------------------------------------------- command lines

TINY = """
name = "tiny"
[model]
input_dim = 1
hidden = ["tanh", "tanh"]
[rules]
default = { kind = "gaussian_trapezoid", size = 6 }
[data.train]
kind = "teacher"
d = 1
teacher = { kind = "single_index_tanh", direction = [1.0] }
rule = { kind = "gauss_hermite", size = 6 }
[solver]
stepper = "euler"
dt = 0.05
t_end = 0.1
[sgd]
widths = [4]
replicas = 1
"""
# (flag, value) pairs that must be refused whatever else is on the line
BAD_FLAGS = {
    "solve": [("--dt", "0"), ("--dt", "-1"), ("--dt", "nan"), ("--dt", "inf"), ("--dt", "x"), ("--dt", "1e-300"),
              ("--t-end", "0"), ("--t-end", "-2"), ("--t-end", "nan"), ("--t-end", "1e300"), ("--stepper", "bogus"),
              ("--stepper", ""), ("--checkpoint-every", "0"), ("--checkpoint-every", "-3"), ("--checkpoint-every", "x"),
              ("--resume", None), ("--frobnicate", None), ("--dt", None)],
    "sgd": [("--widths", ""), ("--widths", "a,b"), ("--widths", "0"), ("--widths", "-4"), ("--widths", "1e3"),
            ("--widths", "99999999999"), ("--widths", "100000,100000"), ("--replicas", "0"), ("--replicas", "-1"),
            ("--replicas", "x"), ("--replicas", "10000000000"), ("--batch", "0"), ("--batch", "1e3"),
            ("--batch", "1000000000000"), ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan"), ("--lr", "inf"),
            ("--lr", "1e-300"), ("--mode", "sideways"), ("--checkpoint-every", "0"), ("--checkpoint-every", "y"),
            ("--frobnicate", "1")],
}
GOOD_FLAGS = {
    "solve": [("--dt", "0.05"), ("--t-end", "0.1"), ("--stepper", "euler"), ("--no-progress", None), ("-q", None),
              ("--checkpoint-every", "2")],
    "sgd": [("--widths", "4"), ("--replicas", "1"), ("--mode", "full"), ("--batch", "2"), ("--lr", "0.05"),
            ("--no-progress", None), ("-q", None), ("--overwrite", None), ("--checkpoint-every", "3"),
            ("--coupling", None)],
}
FLAG_VALUES = ["0", "-1", "nan", "inf", "x", "", "1e400", "3", "0.5", "--", "-q", "a,b", "1,2,,", "\n", "☃"]
OTHER = [["show"], ["compare"], ["collect"], ["sweep"], ["refine"], ["verify", "no_such_reference"], ["reference", "bogus"], ["bogus"], ["--bogus"],
         ["solve", "a", "b"], ["compare", "x"], ["refine", "x", "--rule-sizes"]]


@st.composite
def bad_command_lines(draw, tmp):
    kind = draw(st.sampled_from(["solve", "sgd", "files", "other"]))
    if kind == "other":
        return draw(st.sampled_from(OTHER)) + draw(st.lists(st.sampled_from(FLAG_VALUES), max_size=2))
    if kind == "files":   # readers of result files, each given a damaged or absent file
        target = draw(st.sampled_from(["garbage.nc", "absent.nc", "empty.h5", "dir", "bad.toml", "tiny.toml"]))
        p = str(tmp / target)
        cmd = draw(st.sampled_from([["show", p], ["compare", p, p], ["compare", str(tmp / "tiny.toml"), p],
                                    ["collect", p], ["collect", str(tmp / "absent_dir")],
                                    ["sweep", p, "-o", str(tmp / "sw"), "--workers", draw(st.sampled_from(["0", "-1", "1"]))],
                                    ["refine", p, "--rule-sizes", draw(st.sampled_from(["", "a", "8,x", "0", "-4"]))],
                                    ["verify", "no_such_reference", "--dir", str(tmp / "absent_dir")]]))
        return cmd
    cfg = draw(st.sampled_from(["tiny.toml", "bad.toml", "absent.toml", "garbage.nc", "dir", "invalid.toml"]))
    argv = [kind, str(tmp / cfg), "-o", str(tmp / ("out.nc" if kind == "solve" else "out.h5"))]
    flags = draw(st.lists(st.sampled_from(GOOD_FLAGS[kind]) | st.tuples(
        st.sampled_from([f for f, _ in GOOD_FLAGS[kind] + BAD_FLAGS[kind]]), st.sampled_from(FLAG_VALUES)), max_size=4))
    if cfg == "tiny.toml":   # a valid configuration: some flag must be wrong (last, so no later flag overrides it)
        flags.append(draw(st.sampled_from(BAD_FLAGS[kind])))
    for f, v in flags:
        argv += [f] if v is None else [f, v]
    return argv


def _cli_files(tmp: Path) -> None:
    (tmp / "tiny.toml").write_text(TINY)
    (tmp / "bad.toml").write_text("[model\ninput_dim = ")
    (tmp / "invalid.toml").write_text(TINY.replace("input_dim = 1", "input_dim = 0"))
    (tmp / "garbage.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 3)
    (tmp / "empty.h5").write_bytes(b"")
    (tmp / "dir").mkdir(exist_ok=True)


@pytest.mark.hypothesis   # an inner @given: selected by make fuzz (-m hypothesis)
def test_fuzzed_command_lines_exit_2_with_one_error_line(tmp_path_factory, capsys, monkeypatch):
    tmp = tmp_path_factory.mktemp("cli")
    _cli_files(tmp)
    monkeypatch.chdir(tmp)   # relative paths drawn by the fuzzer land here
    seen = []

    @fuzz_settings(600, 3000, all_health_checks_off=True)
    @given(bad_command_lines(tmp))
    def check(argv):
        seen.append(argv)
        capsys.readouterr()
        try:
            with np.errstate(all="ignore"):
                status = main(argv)
        except SystemExit as exc:   # argparse: usage line(s), then the error line
            status = exc.code
        out, err = capsys.readouterr()
        BEFORE = {"tiny.toml", "bad.toml", "invalid.toml", "garbage.nc", "empty.h5", "dir"}
        left = [p.name for p in tmp.iterdir() if p.name not in BEFORE]
        for p in left:
            shutil.rmtree(tmp / p) if (tmp / p).is_dir() else (tmp / p).unlink()
        assert status == 2, (argv, status, err)
        assert "Traceback" not in err and "Traceback" not in out, (argv, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("mfpde: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
        assert all(ln.startswith(("usage:", "mfpde: error: ", "  ", "mfpde: warning: ")) or ln.startswith("mfpde ")
                   for ln in lines), (argv, err)
        assert not left, (argv, left)   # nothing is written before the command line is found wrong

    check()
    assert len(seen) >= 500


# --------------------------------------------------------------------------- Python API

API_CALLS = [
    lambda a, b, c: quadrature.gauss_hermite(a, b, c),
    lambda a, b, c: quadrature.gauss_legendre(a, b, c),
    lambda a, b, c: quadrature.gaussian_trapezoid(a, b, c),
    lambda a, b, c: quadrature.sobol(a, b, seed=c),
    lambda a, b, c: quadrature.monte_carlo(a, b, seed=c),
    lambda a, b, c: quadrature.smolyak(a, b),
    lambda a, b, c: quadrature.user(a, b),
    lambda a, b, c: quadrature.make_rule(a, "rules.x"),
    lambda a, b, c: data.finite_set(a, b),
    lambda a, b, c: data.probes(a, b),
    lambda a, b, c: data.make_data(a, "data.train", b),
    lambda a, b, c: data.make_law(a, "data.train"),
    lambda a, b, c: embedding.make_init(a, "init.w_1"),
    lambda a, b, c: embedding.make_init(a, "init.W_2", edge=True),
    lambda a, b, c: schedules.make_schedule(a, "schedules.weights"),
    lambda a, b, c: iid.make_law(a, "iid.v"),
    lambda a, b, c: finite.train(_TINY_PROBLEM(), a, mode=b, lr=c, t_end=0.05),
    lambda a, b, c: finite.train(_TINY_PROBLEM(), 4, mode="minibatch", batch=a, lr=0.05, t_end=b),
    lambda a, b, c: config.loads(a if isinstance(a, str) else str(a)),
]
_cache = {}


def _TINY_PROBLEM():
    if "p" not in _cache:
        _cache["p"] = config.loads(TINY.replace('rule = { kind = "gauss_hermite", size = 6 }', "sample = 8")).problem
    return _cache["p"]


@pytest.mark.hypothesis   # an inner @given: selected by make fuzz (-m hypothesis)
def test_fuzzed_python_api_arguments_raise_only_mfpde_errors():
    count = [0]

    @fuzz_settings(1500, 10000, all_health_checks_off=True)
    @given(st.integers(0, len(API_CALLS) - 1), junk, junk, junk)
    def check(i, a, b, c):
        count[0] += 1
        try:
            with np.errstate(all="ignore"):
                API_CALLS[i](a, b, c)
        except MfpdeError as exc:
            assert str(exc)
            if isinstance(exc, ConfigError):
                assert isinstance(exc.key, str)

    check()
    assert count[0] >= 1000


def test_no_pickle_or_eval_of_input_files():
    """Input files are parsed (tomllib, numpy without pickles, h5py), never unpickled or evaluated."""
    import re

    offenders = []
    for path in list((ROOT / "mfpde").rglob("*.py")) + list((ROOT / "solvers").rglob("*.py")):
        text = path.read_text()
        for pat in (r"\bimport pickle\b", r"\bpickle\.", r"\bcloudpickle\b", r"(?<![.\w])eval\(", r"(?<![.\w])exec\(",
                    r"allow_pickle\s*=\s*True", r"\bmarshal\.", r"\bshelve\b", r"yaml\.load\(", r"\.read_pickle\("):
            if re.search(pat, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pat}")
    assert offenders == []
    assert "allow_pickle=False" in (ROOT / "mfpde" / "problem" / "data.py").read_text()


# --------------------------------------------------------------------------- determinism of make test

def test_every_hypothesis_test_takes_its_budget_and_seed_from_fuzzing_settings():
    """CI must be reproducible: no test file sets its own hypothesis seed policy or budget
    (that is tests/fuzzing.py's job), and in make test the loaded profile is derandomized
    with no example database (a stored failing example would change what CI draws)."""
    import re

    from hypothesis import settings as hsettings

    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == "fuzzing.py":
            continue
        text = path.read_text(encoding="utf-8")
        for pat in (r"\bderandomize\s*=", r"\bmax_examples\s*=", r"@settings\(", r"\bsettings\s*\(", r"load_profile\("):
            if re.search(pat, text):
                offenders.append(f"{path.name}: {pat}")
    assert offenders == []
    if not FUZZ:
        assert hsettings.default.derandomize is True
        assert hsettings.default.database is None


# --------------------------------------------------------------------------- one class of bug: unhashable names

NAME_KEYS = ("kind", "law", "base", "psi", "stepper", "loss", "mode", "parameters", "activation",
             "output_activation", "linear_solver", "jacobian", "edges", "teacher", "x_key", "y_key")


def _name_leaves(v, path=()):
    """Every (path, key) of a nested config whose value is a name (a string under a NAME_KEY)."""
    if isinstance(v, dict):
        for k, x in v.items():
            if k in NAME_KEYS and isinstance(x, str):
                yield path + (k,)
            if k in ("hidden", "edges") and isinstance(x, list):   # lists of names
                yield from (path + (k, i) for i, e in enumerate(x) if isinstance(e, str))
            yield from _name_leaves(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _name_leaves(x, path + (i,))


def _name_cases():
    raw_default = tomllib.loads(config.default_text())
    extra = copy.deepcopy(raw_default)   # the schedule kinds, initial-function kinds and laws of the default
    extra["schedules"] = {"weights": {"kind": "power", "xi0": 1.0}, "bias_1": {"kind": "constant"}}
    extra["model"]["biases"] = True
    extra["init"]["b_1"] = {"kind": "quantile", "law": "normal"}
    extra["init"]["W_2"] = {"kind": "kernel", "psi": "tanh"}
    iid_ex = next((b for n, b in BASES if "iid" in b), None)
    cases = []
    for name, base in BASES + [("default+kinds", extra)]:
        for path in _name_leaves(base):
            cases.append((name, base, path))
    assert iid_ex is not None and len(cases) > 40
    return cases


@pytest.mark.parametrize("bad", [[], {}, [["x"]], {"kind": []}], ids=["list", "table", "nested", "table-in-table"])
def test_a_list_or_table_where_any_name_is_expected_is_a_config_error_never_a_type_error(bad):
    """The class of the schedules.py bug (`[schedules] weights = {kind = []}` → TypeError):
    every name-valued key of the default and of every example, in every table, replaced by a
    list or a table, is refused with the project's error naming a key."""
    failures = []
    for name, base, path in _name_cases():
        cfg = copy.deepcopy(base)
        t = cfg
        for p in path[:-1]:
            t = t[p]
        t[path[-1]] = copy.deepcopy(bad)
        try:
            with np.errstate(all="ignore"):
                c = config.from_dict(cfg, source=name, base_dir=ROOT / "examples")
                System(c.problem)
        except MfpdeError as exc:
            if isinstance(exc, ConfigError) and not exc.key:
                failures.append((name, path, "ConfigError without a key"))
        except Exception as exc:  # noqa: BLE001 - the point: nothing else escapes
            failures.append((name, path, f"{type(exc).__name__}: {exc}"))
        else:
            failures.append((name, path, "accepted"))
    assert failures == []
