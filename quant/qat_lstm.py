"""The torch LSTM of bit-exact fine-tuning: it computes the golden model's integers exactly,
with straight-through gradients (the training loop is :mod:`lstmfpga.quant.qat`).

:class:`QATLSTM` holds the float weights of a :class:`~lstmfpga.export.spec.ModelSpec` as
``float64`` parameters and the formats, tables and rounding rules of a
:class:`~lstmfpga.quant.model.QuantizedModel`. Its forward pass quantizes the weights and the
inputs with those formats and runs exactly the step arithmetic of ``docs/numerics.md`` (the
golden model's float datapath: float64 tensors holding integer codes, every product, sum and
power-of-two scaling exact, each requantization one rounding and one clamp), so
:meth:`QATLSTM.codes` equals ``lstmfpga.quant.golden.run(qat.to_qmodel(), x_codes)`` bit for
bit. Gradients pass straight through every rounding (identity), through saturation as
``torch.clamp`` does (zero outside the range), and through the activation tables as the
derivative of the exact function at the table's input.

Requirements (checked, :class:`QATError` otherwise): ``overflow = "saturate"``, an
accumulator of at most 53 bits and tables with code maps — exactly when the golden model
itself uses its exact float datapath (``_FloatDatapath.exact_for``); every preset qualifies.
"""

from __future__ import annotations

import numpy as np
import torch

from ..export.spec import ModelSpec, SpecError
from .golden import CellArithmetic, _FloatDatapath, quantize_inputs
from .model import QHead, QLayer, QuantizedModel, Tensor

__all__ = ["QATLSTM", "QATError"]


class QATError(SpecError):
    """A model or setting that bit-exact fine-tuning cannot handle."""


# -- straight-through primitives -----------------------------------------------------------------
class _RoundSTE(torch.autograd.Function):
    """Forward: round (exactly as the golden model does); backward: identity."""

    @staticmethod
    def forward(ctx, y, rounding):
        if rounding == "half_even":
            return torch.round(y)
        if rounding == "half_up":
            return torch.floor(y + 0.5)
        if rounding == "truncate":
            return torch.floor(y)
        raise QATError(f"rounding must be half_even, half_up or truncate, not {rounding!r}")

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _TableSTE(torch.autograd.Function):
    """Forward: the table's output code of each input code; backward: the exact function's
    derivative, in code units (``f'(v) * 2**(out_frac - in_frac)``)."""

    @staticmethod
    def forward(ctx, codes, code_map, in_frac, out_frac, function):
        ctx.save_for_backward(codes)
        ctx.scale = (in_frac, out_frac, function)
        index = codes.long() % code_map.numel()  # negative codes index from the end
        return code_map[index]

    @staticmethod
    def backward(ctx, grad):
        (codes,) = ctx.saved_tensors
        in_frac, out_frac, function = ctx.scale
        v = codes * 2.0**-in_frac
        if function == "sigmoid":
            s = torch.sigmoid(v)
            slope = s * (1 - s)
        else:
            slope = 1 - torch.tanh(v) ** 2
        return grad * slope * 2.0 ** (out_frac - in_frac), None, None, None, None


def _weight_codes(param: torch.Tensor, fmt, rounding: str) -> torch.Tensor:
    """``fmt.quantize(param, rounding, "saturate")`` as float64 codes, straight-through.

    The rounding of weights avoids ``floor(y + 0.5)``'s double rounding exactly as
    :meth:`FixedFormat.round_codes` does.
    """
    y = param * 2.0**fmt.frac  # exact
    with torch.no_grad():
        if rounding == "half_even":
            r = torch.round(y)
        elif rounding == "half_up":
            r = torch.floor(y)
            r = r + (y - r >= 0.5)
        else:
            r = torch.floor(y) - ((y == 0) & (param < 0)).double()
    codes = y + (r - y).detach()  # exact: r is representable, so y + (r - y) == r
    return torch.clamp(codes, fmt.min_code, fmt.max_code)


# -- the module -----------------------------------------------------------------------------------
class QATLSTM(torch.nn.Module):
    """A fixed-point LSTM (+ head) whose forward computes the golden model's codes.

    Parameters
    ----------
    spec : ModelSpec
        The float weights to train (copied as ``float64`` parameters).
    qmodel : QuantizedModel
        Formats, tables and rules (its weight codes are not used); same geometry as ``spec``.
    """

    def __init__(self, spec: ModelSpec, qmodel: QuantizedModel):
        super().__init__()
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec must be a ModelSpec, not {spec!r}")
        spec.require_lstm("fine-tuning")
        self._geometry = spec
        self._params = torch.nn.ParameterDict()
        for key, value in spec.tensors().items():
            name = key.replace(".", "_")
            self._params[name] = torch.nn.Parameter(torch.tensor(value, dtype=torch.float64))
        self.set_formats(qmodel)

    # -- formats ---------------------------------------------------------------------------------
    def set_formats(self, qmodel: QuantizedModel) -> None:
        """Use ``qmodel``'s formats, tables and rules from now on."""
        if not isinstance(qmodel, QuantizedModel):
            raise TypeError(f"qmodel must be a QuantizedModel, not {qmodel!r}")
        spec = self._geometry
        for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size"):
            if getattr(spec, name) != getattr(qmodel, name):
                raise QATError(
                    f"qmodel {name} must equal the spec's {getattr(spec, name)!r}, not "
                    f"{getattr(qmodel, name)!r}"
                )
        if spec.bias != qmodel.has_bias or (spec.head is None) != (qmodel.head is None):
            raise QATError("qmodel must have the spec's bias and head")
        if not _FloatDatapath.exact_for(qmodel):
            raise QATError(
                "bit-exact fine-tuning needs overflow 'saturate', an accumulator of at most 53 "
                f"bits and table code maps; this model has overflow {qmodel.overflow!r} and "
                f"accumulator {qmodel.acc}"
            )
        self.qmodel = qmodel
        self._cell = CellArithmetic.of(qmodel)
        self._maps = {
            name: torch.tensor(table._code_map(), dtype=torch.float64)
            for name, table in qmodel.tables.items()
        }

    # -- weights ---------------------------------------------------------------------------------
    def _param(self, key: str) -> torch.Tensor:
        return self._params[key.replace(".", "_")]

    def _aligned(self, codes: torch.Tensor, shift: int, target: str) -> torch.Tensor:
        """Codes aligned to the accumulator and pre-scaled by the target's requantization."""
        return codes * 2.0 ** (shift - self.qmodel.requant_shift(target))

    def _layer_matrices(self, index: int, d: int):
        q, rounding = self.qmodel, self.qmodel.rounding
        ql = q.layers[index][d]
        suffix = f"_l{index}" + ("_reverse" if d else "")
        s_in, s_rec, s_b = q.gate_shifts(index, d)
        w_ih = self._aligned(
            _weight_codes(self._param("weight_ih" + suffix), ql.w_ih.fmt, rounding), s_in, "preact"
        )
        w_hh = self._aligned(
            _weight_codes(self._param("weight_hh" + suffix), ql.w_hh.fmt, rounding), s_rec, "preact"
        )
        bias = None
        if ql.bias is not None:
            b = self._param("bias_ih" + suffix) + self._param("bias_hh" + suffix)
            bias = self._aligned(_weight_codes(b, ql.bias.fmt, rounding), s_b, "preact")
        w_hr = None
        if ql.w_hr is not None:
            w_hr = self._aligned(
                _weight_codes(self._param("weight_hr" + suffix), ql.w_hr.fmt, rounding),
                q.proj_shift(index, d),
                "hidden",
            )
        return w_ih, w_hh, bias, w_hr

    # -- arithmetic ------------------------------------------------------------------------------
    def _requant(self, y: torch.Tensor, role: str) -> torch.Tensor:
        fmt = self.qmodel.formats[role]
        return torch.clamp(_RoundSTE.apply(y, self.qmodel.rounding), fmt.min_code, fmt.max_code)

    def _table(self, name: str, codes: torch.Tensor) -> torch.Tensor:
        table = self.qmodel.tables[name]
        return _TableSTE.apply(
            codes, self._maps[name], table.in_fmt.frac, table.out_fmt.frac, table.function
        )

    def _step(self, u, h, c, mats):
        w_ih, w_hh, bias, w_hr = mats
        acc = u @ w_ih.T + h @ w_hh.T
        if bias is not None:
            acc = acc + bias
        pre = self._requant(acc, "preact")
        H = pre.shape[1] // 4
        i = self._table("sigmoid", pre[:, :H])
        f = self._table("sigmoid", pre[:, H : 2 * H])
        g = self._table("tanh_gate", pre[:, 2 * H : 3 * H])
        o = self._table("sigmoid", pre[:, 3 * H :])
        a = self._cell
        total = f * c * 2.0 ** (a.fc_shift - a.c_shift) + i * g * 2.0 ** (a.ig_shift - a.c_shift)
        c = self._requant(total, "cell")
        m = self._requant(self._table("tanh_cell", c) * 2.0**-a.m_shift * o, "hidden")
        h = m if w_hr is None else self._requant(m @ w_hr.T, "hidden")
        return h, c

    def codes(self, x_codes, h0=None, c0=None) -> dict[str, torch.Tensor]:
        """Run on input codes ``(B, T, I)``: ``output`` (B, T, D*H_out), ``h_n``, ``c_n`` (as
        the golden model's), ``head`` or None, and ``prediction``; float64 tensors of codes."""
        q = self.qmodel
        x = torch.as_tensor(np.asarray(x_codes), dtype=torch.float64)
        B, T, _ = x.shape
        H, Ho, D = q.hidden_size, q.output_size, q.num_directions
        LD = q.num_layers * D
        h0 = (
            torch.zeros(LD, B, Ho, dtype=torch.float64)
            if h0 is None
            else torch.as_tensor(np.asarray(h0), dtype=torch.float64)
        )
        c0 = (
            torch.zeros(LD, B, H, dtype=torch.float64)
            if c0 is None
            else torch.as_tensor(np.asarray(c0), dtype=torch.float64)
        )
        layer_input, h_n, c_n = x, [], []
        for index in range(q.num_layers):
            outputs = []
            for d in range(D):
                mats = self._layer_matrices(index, d)
                h, c = h0[index * D + d], c0[index * D + d]
                steps = [None] * T
                for t in range(T - 1, -1, -1) if d else range(T):
                    h, c = self._step(layer_input[:, t], h, c, mats)
                    steps[t] = h
                outputs.append(torch.stack(steps, dim=1))
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outputs, dim=2) if D == 2 else outputs[0]
        head = None
        if q.head is not None:
            source = layer_input[:, -1] if q.head.mode == "last" else layer_input
            s_w, s_b = q.head_shifts()
            w = self._aligned(
                _weight_codes(self._param("head.weight"), q.head.weight.fmt, q.rounding),
                s_w,
                "head_out",
            )
            acc = source @ w.T
            if q.head.bias is not None:
                acc = acc + self._aligned(
                    _weight_codes(self._param("head.bias"), q.head.bias.fmt, q.rounding),
                    s_b,
                    "head_out",
                )
            head = self._requant(acc, "head_out")
        return {
            "output": layer_input,
            "h_n": torch.stack(h_n),
            "c_n": torch.stack(c_n),
            "head": head,
            "prediction": layer_input if head is None else head,
        }

    def forward(self, x) -> torch.Tensor:
        """Float inputs ``(B, T, I)`` → the dequantized prediction (what ``predict`` gives)."""
        x_codes = quantize_inputs(self.qmodel, np.asarray(x))
        return self.codes(x_codes)["prediction"] * self.qmodel.output_format.lsb

    # -- export ----------------------------------------------------------------------------------
    def to_spec(self, source: str = "lstmfpga finetune") -> ModelSpec:
        """The trained float weights as a spec."""
        s = self._geometry
        values = {k: self._param(k).detach().numpy().copy() for k in s.tensors()}
        return ModelSpec.from_tensors({**s.manifest(), "source": source}, values)

    def to_qmodel(self) -> QuantizedModel:
        """The quantized model of the current weights, in the held formats (bit-exact with
        :meth:`codes`)."""
        q, spec = self.qmodel, self.to_spec()

        def tensor(values, old: Tensor | None) -> Tensor | None:
            if old is None:
                return None
            return Tensor(old.fmt.quantize(values, q.rounding, "saturate"), old.fmt)

        layers = tuple(
            tuple(
                QLayer(
                    tensor(lw.w_ih, ql.w_ih),
                    tensor(lw.w_hh, ql.w_hh),
                    tensor(lw.bias, ql.bias),
                    tensor(lw.w_hr, ql.w_hr),
                )
                for lw, ql in zip(spec_layer, q_layer, strict=True)
            )
            for spec_layer, q_layer in zip(spec.layers, q.layers, strict=True)
        )
        head = None
        if q.head is not None:
            head = QHead(
                tensor(spec.head.weight, q.head.weight),
                tensor(spec.head.bias, q.head.bias),
                q.head.mode,
            )
        return QuantizedModel.assemble(
            spec,
            layers,
            head,
            formats=dict(q.formats),
            acc=q.acc,
            config=q.config,
            calibration={**q.calibration, "finetuned": True},
        )
