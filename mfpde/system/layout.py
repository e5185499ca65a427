"""Flat state layout (System room): where each parameter array lives in the state vector.

Order: ``w_1`` [Q1, d], ``b_1`` [Q1] (if biased), ``W_2`` [Q1, Q2], ``b_2``, …, ``W_L``,
``b_L``, ``v`` [QL, K], ``b_out`` [K] (if biased).  Names match SPEC §2 (``w_1``, ``W_l``,
``v``, ``b_l``, ``b_out`` = b_{L+1}).  A reduced first layer (SPEC §7, ``reduced=True``) has
``w_1`` [Q1, k + 1] with dims (``node_1``, ``reduced_input``): columns (a_1 … a_k, β), not the
d-dimensional input of the probes (``input_dim``).  A middle weight with an extra initial-weight index
(nonlinear edges, ``docs/edges.md``) is ``W_l`` [R_l, Q_{l−1}, Q_l] with dims
(``omega_l``, ``node_{l−1}``, ``node_l``).  Imports numpy and mfpde.system.kernels constants only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfpde.system.kernels import HEADER, PER


@dataclass(frozen=True)
class Layout:
    input_dim: int
    outputs: int
    sizes: tuple[int, ...]          # Q_1..Q_L (tracers included)
    biases: tuple[bool, ...]        # per hidden layer
    output_bias: bool
    omega_sizes: tuple[int, ...]    # R_l per hidden layer (1: no initial-weight index; layer 1 always 1)
    entries: tuple[tuple[str, int, tuple[int, ...], tuple[str, ...]], ...]  # name, offset, shape, dims

    @classmethod
    def build(cls, input_dim: int, outputs: int, sizes, biases, output_bias: bool, omega_sizes=None,
              reduced: bool = False) -> "Layout":
        """The layout of a network; ``reduced``: layer 1 is SPEC §7's reduced layer (w_1's second dim
        is then named ``reduced_input``)."""
        entries = []
        L = len(sizes)
        omega_sizes = (1,) * L if omega_sizes is None else tuple(int(r) for r in omega_sizes)
        off = 0

        def add(name, shape, dims):
            nonlocal off
            entries.append((name, off, tuple(int(s) for s in shape), dims))
            off += int(np.prod(shape))

        for l in range(1, L + 1):
            Q = sizes[l - 1]
            if l == 1:
                add("w_1", (Q, input_dim), ("node_1", "reduced_input" if reduced else "input_dim"))
            elif omega_sizes[l - 1] > 1:
                add(f"W_{l}", (omega_sizes[l - 1], sizes[l - 2], Q), (f"omega_{l}", f"node_{l - 1}", f"node_{l}"))
            else:
                add(f"W_{l}", (sizes[l - 2], Q), (f"node_{l - 1}", f"node_{l}"))
            if biases[l - 1]:
                add(f"b_{l}", (Q,), (f"node_{l}",))
        add("v", (sizes[-1], outputs), (f"node_{L}", "output"))
        if output_bias:
            add("b_out", (outputs,), ("output",))
        return cls(int(input_dim), int(outputs), tuple(int(q) for q in sizes), tuple(bool(b) for b in biases),
                   bool(output_bias), omega_sizes, tuple(entries))

    @property
    def L(self) -> int:
        return len(self.sizes)

    @property
    def size(self) -> int:
        name, off, shape, _ = self.entries[-1]
        return off + int(np.prod(shape))

    def offset(self, name: str) -> int:
        for n, off, _, _ in self.entries:
            if n == name:
                return off
        return -1

    def views(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Named array views into a flat state ``y`` (no copies)."""
        return {n: y[off:off + int(np.prod(shape))].reshape(shape) for n, off, shape, _ in self.entries}

    def dims(self) -> dict[str, tuple[str, ...]]:
        return {n: dims for n, _, _, dims in self.entries}

    def pack(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Flat state from named arrays (shapes checked)."""
        y = np.empty(self.size)
        for n, off, shape, _ in self.entries:
            a = np.asarray(arrays[n], dtype=float)
            if a.shape != shape:
                raise ValueError(f"{n}: expected shape {shape}, got {a.shape}")
            y[off:off + a.size] = a.ravel()
        return y

    def lay_array(self, act_codes, out_act: int, loss_code: int, edge_codes=None) -> np.ndarray:
        """The integer layout array the kernels read (see mfpde.system.kernels).

        The initial-weight rule weights of layer l sit after all node weights in ω, layer by layer.
        """
        L = self.L
        lay = np.zeros(HEADER + PER * L, dtype=np.int64)
        lay[:HEADER] = (L, self.input_dim, self.outputs, loss_code, out_act, int(self.output_bias),
                   self.offset("v"), self.offset("b_out"))
        edge_codes = (0,) * L if edge_codes is None else tuple(edge_codes)
        oo = 0
        orho = sum(self.sizes)
        for i in range(L):
            l = i + 1
            lay[HEADER + PER * i:HEADER + PER * (i + 1)] = (
                self.sizes[i], act_codes[i], int(self.biases[i]),
                self.offset("w_1" if l == 1 else f"W_{l}"), self.offset(f"b_{l}"), oo,
                edge_codes[i], self.omega_sizes[i], orho)
            oo += self.sizes[i]
            orho += self.omega_sizes[i]
        return lay
