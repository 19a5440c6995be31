"""Float64 NumPy reference forward pass of a :class:`ModelSpec` (matches ``torch.nn.LSTM``).

Vectorized over the batch and the gate rows; the only Python loops are over layers,
directions and timesteps (the recurrence). Shapes follow PyTorch with ``batch_first=True``:

* ``x``: ``(batch, seq, input_size)``
* ``h0``: ``(num_layers * D, batch, H_out)``, ``c0``: ``(num_layers * D, batch, H)``
* ``output``: ``(batch, seq, D * H_out)``, ``h_n``/``c_n`` like ``h0``/``c0``
* ``head``: ``(batch, out)`` for a ``last`` head, ``(batch, seq, out)`` for ``all``, else None.

With ``trace=True`` the result also keeps, per (layer, direction), the gate pre-activations
``preact`` ``(B, T, 4H)``, the cell ``c`` ``(B, T, H)``, ``m = o * tanh(c)`` ``(B, T, H)`` and
``h`` ``(B, T, H_out)`` indexed by *time* (not step order): what calibration measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .spec import ModelSpec, SpecError

__all__ = ["ForwardResult", "check_inputs", "check_states", "forward", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


@dataclass
class ForwardResult:
    output: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray
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


def check_states(spec: ModelSpec, batch: int, h0, c0) -> tuple[np.ndarray, np.ndarray]:
    """Validate initial states (``None`` means zeros); returns float64 arrays."""
    LD = spec.num_layers * spec.num_directions
    shapes = {"h0": (LD, batch, spec.output_size), "c0": (LD, batch, spec.hidden_size)}
    states = []
    for name, value in (("h0", h0), ("c0", c0)):
        if value is None:
            states.append(np.zeros(shapes[name]))
            continue
        value = np.asarray(value, dtype=np.float64)
        if value.shape != shapes[name]:
            raise SpecError(f"{name} must have shape {shapes[name]}, not {value.shape}")
        if not np.all(np.isfinite(value)):
            raise SpecError(f"{name} contains non-finite values (NaN or Inf)")
        states.append(value)
    return states[0], states[1]


def forward(spec: ModelSpec, x, h0=None, c0=None, *, trace: bool = False) -> ForwardResult:
    """Run the float64 reference; see the module docstring for shapes."""
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
    head = None
    if spec.head is not None:
        source = layer_input[:, -1] if spec.head.mode == "last" else layer_input
        head = source @ spec.head.weight.T
        if spec.head.bias is not None:
            head = head + spec.head.bias
    return ForwardResult(layer_input, h_n, c_n, head, traces)
