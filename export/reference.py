"""Float64 NumPy reference forward pass of a :class:`ModelSpec` (``torch.nn.LSTM``/``nn.GRU``).

Vectorized over the batch and the gate rows; the only Python loops are over layers,
directions and timesteps (the recurrence). Shapes follow PyTorch with ``batch_first=True``:

* ``x``: ``(batch, seq, input_size)``
* ``h0``: ``(num_layers * D, batch, H_out)``, ``c0``: ``(num_layers * D, batch, H)``
* ``output``: ``(batch, seq, D * H_out)``, ``h_n``/``c_n`` like ``h0``/``c0``
* ``head``: ``(batch, out)`` for a ``last`` head, ``(batch, seq, out)`` for ``all``, else None.

With ``trace=True`` the result also keeps, per (layer, direction), the gate pre-activations
``preact`` ``(B, T, 4H)``, the cell ``c`` ``(B, T, H)``, ``m = o * tanh(c)`` ``(B, T, H)`` and
``h`` ``(B, T, H_out)`` indexed by *time* (not step order): what calibration measures.

A GRU spec (``spec.cell == "gru"``) follows PyTorch's ``nn.GRU`` exactly, gates ``(r, z, n)``::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))      # r applies after the recurrent product
    h' = (1 - z) * n + z * h

It has no cell state: ``c0`` must be ``None`` and ``c_n`` is ``None``. Its trace holds, per
(layer, direction), the input sums ``gi = W_i x + b_i`` and the recurrent sums
``gh = W_h h + b_h`` (both ``(B, T, 3H)``, gate blocks r, z, n), the gates ``r``, ``z``,
``n`` and ``h`` (each ``(B, T, H)``), indexed by time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .spec import ModelSpec, SpecError

__all__ = ["ForwardResult", "GRUTrace", "check_inputs", "check_states", "forward", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


@dataclass
class ForwardResult:
    output: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None  # None for a GRU
    head: np.ndarray | None
    trace: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def prediction(self) -> np.ndarray:
        """What ``lstmfpga predict`` writes: the head output, else the output sequence."""
        return self.output if self.head is None else self.head


def check_inputs(spec: ModelSpec, x) -> np.ndarray:
    """Validate ``x`` as ``(batch, seq, input_size)`` finite floats; returns float64."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise SpecError(f"inputs must be a float array, not dtype {x.dtype}")
    if x.ndim != 3:
        raise SpecError(f"inputs must have shape (batch, seq, features), not {x.shape}")
    if x.shape[2] != spec.input_size:
        raise SpecError(f"inputs have {x.shape[2]} features, the model expects {spec.input_size}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise SpecError(f"inputs must have at least one sequence and one timestep, not {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SpecError("inputs contain non-finite values (NaN or Inf)")
    return x.astype(np.float64, copy=False)


def check_states(spec: ModelSpec, batch: int, h0, c0) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate initial states (``None`` means zeros); returns float64 arrays.

    A GRU has no cell state: ``c0`` must be ``None`` and is returned as ``None``.
    """
    LD = spec.num_layers * spec.num_directions
    shapes = {"h0": (LD, batch, spec.output_size), "c0": (LD, batch, spec.hidden_size)}
    names = ("h0", "c0")
    if spec.cell == "gru":
        if c0 is not None:
            raise SpecError("c0 must be None for a GRU (it has no cell state), not an array")
        names = ("h0",)
    states = []
    for name, value in zip(names, (h0, c0), strict=False):
        if value is None:
            states.append(np.zeros(shapes[name]))
            continue
        value = np.asarray(value, dtype=np.float64)
        if value.shape != shapes[name]:
            raise SpecError(f"{name} must have shape {shapes[name]}, not {value.shape}")
        if not np.all(np.isfinite(value)):
            raise SpecError(f"{name} contains non-finite values (NaN or Inf)")
        states.append(value)
    return states[0], (states[1] if len(states) == 2 else None)


def forward(spec: ModelSpec, x, h0=None, c0=None, *, trace: bool = False) -> ForwardResult:
    """Run the float64 reference; see the module docstring for shapes."""
    if spec.cell == "gru":
        return _forward_gru(spec, x, h0, c0, trace=trace)
    x = check_inputs(spec, x)
    B, T, _ = x.shape
    h0, c0 = check_states(spec, B, h0, c0)
    H, D = spec.hidden_size, spec.num_directions
    layer_input = x
    h_n, c_n = np.empty_like(h0), np.empty_like(c0)
    traces = {}
    for index, directions in enumerate(spec.layers):
        outputs = []
        for d, lw in enumerate(directions):
            state = index * D + d
            h, c = h0[state], c0[state]
            bias = lw.bias if lw.bias is not None else 0.0
            # Input contribution for all timesteps at once: (B, T, 4H).
            pre_in = layer_input @ lw.w_ih.T + bias
            out = np.empty((B, T, spec.output_size))
            rec = {k: np.empty((B, T, n)) for k, n in (("preact", 4 * H), ("c", H), ("m", H))}
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                pre = pre_in[:, t] + h @ lw.w_hh.T
                i, f, g, o = (pre[:, k * H : (k + 1) * H] for k in range(4))
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                m = sigmoid(o) * np.tanh(c)
                h = m @ lw.w_hr.T if lw.w_hr is not None else m
                out[:, t] = h
                if trace:
                    rec["preact"][:, t], rec["c"][:, t], rec["m"][:, t] = pre, c, m
            h_n[state], c_n[state] = h, c
            outputs.append(out)
            if trace:
                rec["h"] = out
                traces[(index, d)] = rec
        layer_input = np.concatenate(outputs, axis=2) if D == 2 else outputs[0]
    return ForwardResult(layer_input, h_n, c_n, _head(spec, layer_input), traces)


def _head(spec: ModelSpec, sequence: np.ndarray) -> np.ndarray | None:
    """The Linear head on the last timestep or on every timestep, or ``None``."""
    if spec.head is None:
        return None
    source = sequence[:, -1] if spec.head.mode == "last" else sequence
    head = source @ spec.head.weight.T
    if spec.head.bias is not None:
        head = head + spec.head.bias
    return head


class GRUTrace(dict):
    """One (layer, direction) of a GRU trace; asking it for an LSTM quantity is a SpecError.

    Stages written for LSTMs (calibration reads ``preact``, ``c``, ``m``) thus refuse a GRU
    spec with one line instead of a ``KeyError``.
    """

    def __missing__(self, key):
        raise SpecError(
            f"a GRU has no {key!r} (its trace holds gi, gh, r, z, n, h): "
            "this stage supports LSTM specs only"
        )


def _forward_gru(spec: ModelSpec, x, h0, c0, *, trace: bool) -> ForwardResult:
    """``nn.GRU``'s forward (see the module docstring); vectorized over batch and rows."""
    x = check_inputs(spec, x)
    B, T, _ = x.shape
    h0, _ = check_states(spec, B, h0, c0)
    H, D = spec.hidden_size, spec.num_directions
    layer_input = x
    h_n = np.empty_like(h0)
    traces = {}
    for index, directions in enumerate(spec.layers):
        outputs = []
        for d, lw in enumerate(directions):
            state = index * D + d
            h = h0[state]
            # Input sums of all timesteps at once, (B, T, 3H); the recurrent bias stays apart
            # because b_hn is scaled by r.
            gi = layer_input @ lw.w_ih.T
            if lw.b_ih is not None:
                gi = gi + lw.b_ih
            b_hh = lw.b_hh if lw.b_hh is not None else 0.0
            out = np.empty((B, T, H))
            rec = GRUTrace(
                (k, np.empty((B, T, n))) for k, n in (("gh", 3 * H), ("r", H), ("z", H), ("n", H))
            )
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                gh = h @ lw.w_hh.T + b_hh
                rz = sigmoid(gi[:, t, : 2 * H] + gh[:, : 2 * H])
                r, z = rz[:, :H], rz[:, H:]
                n = np.tanh(gi[:, t, 2 * H :] + r * gh[:, 2 * H :])
                h = (1.0 - z) * n + z * h
                out[:, t] = h
                if trace:
                    rec["gh"][:, t], rec["r"][:, t], rec["z"][:, t], rec["n"][:, t] = gh, r, z, n
            h_n[state] = h
            outputs.append(out)
            if trace:
                rec["gi"], rec["h"] = gi, out
                traces[(index, d)] = rec
        layer_input = np.concatenate(outputs, axis=2) if D == 2 else outputs[0]
    return ForwardResult(layer_input, h_n, None, _head(spec, layer_input), traces)
