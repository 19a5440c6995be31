"""The accelerator's stream lengths per sequence: the one definition.

What goes into ``s_axis`` for a sequence of ``T`` steps (with ``initial_state``: ``h0``
then ``c0`` of every layer and direction, then ``x`` time-major) and what comes out of
``m_axis`` (the prediction, then with ``with_states`` ``h_n`` and ``c_n``) depend only on the
model's geometry and these two build options. :class:`StreamGeometry` holds exactly that;
the accelerator, the simulation flows, the manifest and the host runtime all ask it.

Pure Python (no Amaranth, no NumPy): the host runtime loads it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["HEAD_MODES", "StreamGeometry"]

#: A head's modes: one output per sequence (``"last"``) or per step (``"all"``).
HEAD_MODES = ("last", "all")


@dataclass(frozen=True)
class StreamGeometry:
    """Sizes the stream contract depends on (from a model geometry and the build options).

    ``states`` is ``L * D`` (layers times directions), ``output_size`` ``H_out`` (the
    projection size, else ``hidden_size``), ``sequence_output_size`` ``D * H_out``,
    ``head_out`` the head's outputs (0 without a head), ``head_mode`` one of
    :data:`HEAD_MODES` or ``None``."""

    input_size: int
    hidden_size: int
    output_size: int
    states: int  # L * D
    head_out: int  # 0 without a head
    head_mode: str | None
    sequence_output_size: int  # D * H_out
    with_states: bool = False
    initial_state: bool = False
    cell_state: bool = True  # an LSTM's c (c0, c_n); a GRU has none

    @classmethod
    def of(cls, model, *, with_states: bool = False, initial_state: bool = False):
        """From a model geometry (a ``QuantizedModel`` or ``ModelSpec``: ``input_size``,
        ``hidden_size``, ``output_size``, ``num_layers``, ``num_directions``,
        ``sequence_output_size``, ``head``)."""
        head = model.head
        return cls(
            input_size=model.input_size,
            hidden_size=model.hidden_size,
            output_size=model.output_size,
            states=model.num_layers * model.num_directions,
            head_out=0 if head is None else head.out_features,
            head_mode=None if head is None else head.mode,
            sequence_output_size=model.sequence_output_size,
            with_states=with_states,
            initial_state=initial_state,
            cell_state=getattr(model, "cell", "lstm") == "lstm",
        )

    @property
    def state_length(self) -> int:
        """Elements of ``h`` and ``c`` of every layer and direction: ``L*D*(H_out + H)``
        (a GRU's ``h`` only: ``L*D*H``)."""
        return self.states * (self.output_size + (self.hidden_size if self.cell_state else 0))

    def prediction_shape(self, T: int) -> tuple[int, ...]:
        """The shape of one sequence's prediction (head ``last``: ``(out,)``; head ``all``:
        ``(T, out)``; no head: ``(T, D*H_out)``)."""
        if self.head_mode == "last":
            return (self.head_out,)
        if self.head_mode == "all":
            return (T, self.head_out)
        return (T, self.sequence_output_size)

    def input_length(self, T: int) -> int:
        """``s_axis`` elements of a sequence of ``T`` steps."""
        return T * self.input_size + (self.state_length if self.initial_state else 0)

    def output_length(self, T: int) -> int:
        """``m_axis`` elements of a sequence of ``T`` steps."""
        n = math.prod(self.prediction_shape(T))
        return n + (self.state_length if self.with_states else 0)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (:meth:`lstmfpga.hw.manifest.Manifest` stores it;
        ``cell_state`` only when false, a GRU's: an LSTM's dict is as before GRUs)."""
        out = asdict(self)
        if self.cell_state:
            del out["cell_state"]
        return out
