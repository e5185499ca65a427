"""The tiny problem many tests solve or train (two tanh layers of 6 trapezoid nodes, a d = 1
teacher on 6 Gauss–Hermite points, RK4 with dt = 0.05): one text, built here, instead of a
copy in every test file.  ``tests/`` is on pytest's path (pyproject.toml)."""
from __future__ import annotations


def tiny_toml(name: str, *, probes: int | None = 3, t_end: float = 0.5, widths: list[int] | None = None,
              replicas: int = 2) -> str:
    """The TOML text of the tiny problem: ``probes`` grid points on [−1, 1] (None: no probes),
    saves every 0.1 up to ``t_end``, and an ``[sgd]`` table when ``widths`` is given."""
    text = (f'\nname = "{name}"\n[model]\ninput_dim = 1\nhidden = ["tanh", "tanh"]\n[rules]\n'
            'default = { kind = "gaussian_trapezoid", size = 6 }\n[data.train]\nkind = "teacher"\nd = 1\n'
            'teacher = { kind = "single_index_tanh", direction = [1.0] }\nrule = { kind = "gauss_hermite", size = 6 }\n')
    if probes is not None:
        text += f'[probes]\nkind = "grid"\nlow = -1.0\nhigh = 1.0\nsize = {probes}\n'
    text += f'[solver]\nstepper = "rk4"\ndt = 0.05\nt_end = {t_end}\nsave_every = 0.1\n'
    if widths is not None:
        text += f"[sgd]\nwidths = {widths}\nreplicas = {replicas}\n"
    return text
