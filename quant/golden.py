"""The bit-exact golden model: integer NumPy, the arithmetic contract of the hardware.

Everything here takes and returns ``int64`` codes; ``docs/numerics.md`` states the same
rules in prose. The hardware blocks are checked against the primitives (:func:`dot_accumulate`,
:func:`lstmfpga.quant.fixed.requantize`, :class:`CellArithmetic`,
:meth:`ActivationTable.lookup`), and the accelerator against :func:`run`.

Per layer ``l``, direction ``d`` and step (time runs backwards for ``d = 1``)::

    acc    = (W_ih·u_t << s_in) + (W_hh·h_prev << s_rec) + (b << s_b)     exact, acc format
    pre    = requant(acc, acc.frac - preact.frac)                          → preact
    i,f,o  = sigmoid_table(pre_i, pre_f, pre_o);  g = tanh_gate_table(pre_g)   → gate
    c      = requant((f·c_prev << s_fc) + (i·g << s_ig), sum_frac - cell.frac) → cell
    m      = requant(o · tanh_cell_table(c), 2·gate.frac - hidden.frac)    → hidden
    h      = m, or with a projection requant(W_hr·m << s_hr, acc.frac - hidden.frac)

``requant`` is ``shift_round`` with the model's rounding mode, then saturate (or wrap).
The head applies ``requant((W·h << s_w) + (b << s_b), acc.frac - head_out.frac)``.

How it computes (not part of the contract): when every intermediate value is an integer of
magnitude below 2**52 (accumulator at most 53 bits wide, see ``FloatDatapath.exact_for``)
the step runs on float64 arrays holding the integer codes
(:mod:`lstmfpga.quant.datapath_float`), with one BLAS product per step and in-place
element-wise passes over preallocated buffers; every product, sum, power-of-two scaling and
rounding is then exact, so the codes are those of the int64 path
(:mod:`lstmfpga.quant.datapath_int`: the primitives above, used otherwise and for ``wrap``).
The tests check that both paths agree bit for bit. When numba is importable (and
``LSTMFPGA_NO_JIT`` is unset) runs of at least :data:`JIT_MIN_CELLS` cell updates take the
float path with each step's element-wise work compiled into one pass
(:mod:`lstmfpga.quant.datapath_jit`: narrow time-major layer buffers, the float64 product on
torch's BLAS when the process has imported torch), which gives the NumPy float path's codes.

Modules: :mod:`~lstmfpga.quant.arithmetic` (the primitives), ``datapath_int``,
``float_codes`` (exact float64 codes: rounding, table indices, maps), ``datapath_float``,
``datapath_jit``; this module checks the arguments, runs the layers and the head, and
quantizes floats.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..export.spec import SpecError
from .arithmetic import CellArithmetic, dot_accumulate
from .datapath_float import FloatDatapath
from .datapath_int import IntDatapath, Saturation
from .fixed import FixedFormat, check_codes
from .float_codes import CodeIndex
from .model import QuantizedModel

__all__ = [
    "CellArithmetic",
    "GoldenResult",
    "dot_accumulate",
    "predict",
    "quantize_inputs",
    "run",
]

# Former private names, still read by tests and lstmfpga.quant.qat.
_Saturation, _IntDatapath, _FloatDatapath, _CodeIndex = (
    Saturation, IntDatapath, FloatDatapath, CodeIndex)  # fmt: skip


@dataclass
class GoldenResult:
    """Integer codes: ``output`` (B, T, D*H_out) in ``hidden``; ``h_n`` (L*D, B, H_out);
    ``c_n`` (L*D, B, H) in ``cell``; ``head`` in ``head_out`` or None; ``saturation``
    counts per role; ``trace[(l, d)]`` holds ``preact``, ``gates`` (B, T, 4H), ``c``, ``m``,
    ``h`` by time when asked."""

    output: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray
    head: np.ndarray | None
    saturation: dict[str, int]
    trace: dict = field(default_factory=dict)

    @property
    def prediction(self) -> np.ndarray:
        """What ``predict --raw`` writes: head codes, else the output sequence codes."""
        return self.output if self.head is None else self.head


def quantize_inputs(model: QuantizedModel, x, saturation: dict | None = None) -> np.ndarray:
    """Float inputs ``(batch, seq, input_size)`` → ``x`` codes.

    Rounds per the model's rounding mode, then saturates (or wraps) per its overflow mode;
    adds the number of codes that did not fit to ``saturation["x"]``.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise SpecError(f"inputs must be a float array, not dtype {x.dtype}")
    if x.ndim != 3 or x.shape[2] != model.input_size or 0 in x.shape:
        raise SpecError(f"inputs must have shape (batch, seq, {model.input_size}), not {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SpecError("inputs contain non-finite values (NaN or Inf)")
    return _quantize_data(model, "x", x, model.overflow, saturation, "x")


def _quantize_data(model, role, values, overflow, saturation, counter) -> np.ndarray:
    fmt = model.formats[role]
    codes = fmt.round_codes(values, model.rounding)
    if saturation is not None:
        saturation[counter] = saturation.get(counter, 0) + int(
            np.count_nonzero(fmt.overflows(codes))
        )
    return fmt.fit(codes, overflow)


def _check_codes(name: str, codes, shape: tuple, fmt: FixedFormat) -> np.ndarray:
    return check_codes(name, codes, shape, fmt, SpecError)


#: The compiled datapath runs a model when its run has at least this many cell updates
#: (batch x steps x hidden x layers x directions): below it the NumPy float path is as fast
#: or faster per call, and does not load numba (about 0.5 s of CPU per process).
JIT_MIN_CELLS = 2**18


def datapath(model: QuantizedModel, cells: int | None = None) -> IntDatapath:
    """The datapath ``run`` uses for ``model`` (``cells`` cell updates, unknown if None):
    float64 where exact (compiled when numba is importable, ``LSTMFPGA_NO_JIT`` is unset and
    ``cells >= JIT_MIN_CELLS``: see :func:`jit_datapath`), else int64."""
    if not FloatDatapath.exact_for(model):
        return IntDatapath(model)
    jit = jit_datapath() if cells is None or cells >= JIT_MIN_CELLS else None
    return FloatDatapath(model) if jit is None else jit(model)


def jit_datapath():
    """:class:`lstmfpga.quant.datapath_jit.JitDatapath`, or None when numba is not importable
    or the environment sets ``LSTMFPGA_NO_JIT`` (to anything but "" or "0"): then ``run``
    uses the NumPy float path, which computes the same codes."""
    if os.environ.get("LSTMFPGA_NO_JIT", "") not in ("", "0"):
        return None
    try:
        import numba  # noqa: F401  (optional)
    except ImportError:
        return None
    from .datapath_jit import JitDatapath

    return JitDatapath


def run(model: QuantizedModel, x_codes, h0=None, c0=None, *, trace: bool = False):
    """Run the golden model on input codes ``(batch, seq, input_size)``.

    ``h0`` ``(L*D, B, H_out)`` hidden codes and ``c0`` ``(L*D, B, H)`` cell codes default to
    zeros. Returns a :class:`GoldenResult`. A GRU model (``model.cell == "gru"``) runs
    :func:`lstmfpga.quant.gru_golden.run` (``c_n`` None).
    """
    if getattr(model, "cell", "lstm") == "gru":
        from .gru_golden import run as gru_run  # imports this module

        return gru_run(model, x_codes, h0, c0, trace=trace)
    x_codes, h0, c0 = _checked_arguments(model, x_codes, h0, c0)
    B, T, _ = x_codes.shape
    dp = datapath(model, B * T * model.hidden_size * model.num_layers * model.num_directions)
    sat = Saturation()
    h_n, c_n = np.empty_like(h0), np.empty_like(c0)
    traces = {}
    # The layers work in (time, batch, feature) layout, so that every step reads and writes
    # contiguous (batch, feature) blocks. The NumPy paths' last layer writes the (batch,
    # time, feature) int64 result through a transposed view as it goes; the compiled one
    # (dp.staged) writes narrow integer buffers, and the last is widened into the result.
    output = np.empty((B, T, model.num_directions * model.output_size), np.int64)
    buffers = getattr(dp, "layer_dtype", dp.dtype)
    layer_input = np.empty((T, B, model.input_size), buffers)
    np.copyto(layer_input, x_codes.transpose(1, 0, 2), casting="unsafe")  # codes fit
    for index in range(model.num_layers):
        # The last layer writes the result as it goes, the others a buffer of its own.
        if index == model.num_layers - 1 and not dp.staged:
            layer_output = output.transpose(1, 0, 2)
        else:
            layer_output = np.empty((T, B, output.shape[2]), buffers)
        _run_layer(dp, index, layer_input, layer_output, h0, c0, h_n, c_n, sat, traces, trace)
        layer_input = layer_output
    if dp.staged:
        np.copyto(output, layer_input.transpose(1, 0, 2))
    head = None
    if model.head is not None:
        head = _run_head(dp, output, sat)
    return GoldenResult(output, h_n, c_n, head, dict(sat), traces)


def _checked_arguments(model: QuantizedModel, x_codes, h0, c0):
    """``(x_codes, h0, c0)`` as int64 codes, zero states when omitted; SpecError if a shape
    or a code is wrong."""
    x_codes = np.asarray(x_codes)
    if x_codes.ndim != 3 or x_codes.shape[2] != model.input_size or 0 in x_codes.shape:
        raise SpecError(
            f"input codes must have shape (batch, seq, {model.input_size}), not {x_codes.shape}"
        )
    x_codes = _check_codes("input codes", x_codes, x_codes.shape, model.formats["x"])
    B = x_codes.shape[0]
    LD = model.num_layers * model.num_directions
    fmts = model.formats
    h_shape, c_shape = (LD, B, model.output_size), (LD, B, model.hidden_size)
    h0 = np.zeros(h_shape, np.int64) if h0 is None else _check_codes(
        "h0", h0, h_shape, fmts["hidden"])  # fmt: skip
    c0 = np.zeros(c_shape, np.int64) if c0 is None else _check_codes(
        "c0", c0, c_shape, fmts["cell"])  # fmt: skip
    return x_codes, h0, c0


def _run_layer(dp, index, layer_input, layer_output, h0, c0, h_n, c_n, sat, traces, trace):
    """Run both directions of layer ``index`` on ``(T, B, K)`` codes into ``layer_output``
    ``(T, B, D*H_out)``; store final states in ``h_n``/``c_n`` and traces."""
    model = dp.model
    T, B = layer_input.shape[:2]
    H, H_out, D = model.hidden_size, model.output_size, model.num_directions
    for d, q in enumerate(model.layers[index]):
        state = index * D + d
        columns = slice(d * H_out, (d + 1) * H_out)
        rec = {}
        if trace:
            rec = {k: np.empty((B, T, n), np.int64) for k, n in
                   (("preact", 4 * H), ("gates", 4 * H), ("c", H), ("m", H))}  # fmt: skip
        steps = range(T - 1, -1, -1) if d else range(T)
        args = index, d, q, layer_input, h0[state], c0[state], steps
        if dp.staged:
            h, c = dp.direction(*args, layer_output, columns.start, rec, sat)
        else:
            h, c = dp.direction(*args, layer_output[:, :, columns], rec, sat)
        h_n[state], c_n[state] = h, c
        if trace:
            rec["h"] = _batch_major(layer_output[:, :, columns])
            traces[(index, d)] = rec


def _run_head(dp, output: np.ndarray, sat: Saturation) -> np.ndarray:
    """The head's codes for the ``(B, T, D*H_out)`` output codes."""
    model = dp.model
    source = output[:, -1] if model.head.mode == "last" else output
    s_w, s_b = model.head_shifts()
    acc = (
        source.reshape(-1, source.shape[-1]).astype(dp.dtype)
        @ dp.matrix(model.head.weight.codes, s_w, "head_out").T
    )
    if model.head.bias is not None:
        acc += dp.matrix(model.head.bias.codes, s_b, "head_out")
    head, n = dp.requant(acc.reshape(*source.shape[:-1], -1), "head_out")
    sat.add("head_out", n)
    return head.astype(np.int64)


def _batch_major(codes: np.ndarray) -> np.ndarray:
    """``(time, batch, feature)`` codes (integers or float64) → ``(batch, time, feature)`` int64
    (one copy: each (time, batch) row of features moves as a whole)."""
    T, B, F = codes.shape
    out = np.empty((B, T, F), np.int64)
    np.copyto(out, codes.transpose(1, 0, 2), casting="unsafe")  # exact integers
    return out


def predict(model: QuantizedModel, x, h0=None, c0=None) -> tuple[np.ndarray, GoldenResult]:
    """Float in, dequantized float out: quantize ``x`` (and states), run, dequantize.

    ``x`` is quantized with the model's rounding and overflow modes; ``h0``/``c0`` (floats,
    shapes as for :func:`run`) with its rounding, saturating. Codes that did not fit count
    under ``x``, ``hidden`` (``h0``) and ``cell`` (``c0``) in ``result.saturation``.
    Returns ``(prediction, result)``: the dequantized head output (or output sequence) and
    the :class:`GoldenResult` of codes. A GRU model runs
    :func:`lstmfpga.quant.gru_golden.predict`.
    """
    if getattr(model, "cell", "lstm") == "gru":
        from .gru_golden import predict as gru_predict  # imports this module

        return gru_predict(model, x, h0, c0)
    sat = Saturation()
    x_codes = quantize_inputs(model, x, sat)
    states = []
    for name, role, value in (("h0", "hidden", h0), ("c0", "cell", c0)):
        if value is not None:
            value = np.asarray(value)
            if value.dtype.kind not in "fiu" or value.dtype == np.bool_:
                raise SpecError(f"{name} must be a float array, not dtype {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise SpecError(f"{name} contains non-finite values (NaN or Inf)")
            value = _quantize_data(model, role, value, "saturate", sat, role)
        states.append(value)
    result = run(model, x_codes, *states)
    for role, count in sat.items():
        result.saturation[role] = result.saturation.get(role, 0) + count
    return model.output_format.dequantize(result.prediction), result
