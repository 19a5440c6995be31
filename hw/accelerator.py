"""The complete LSTM accelerator: sequencer, buffers, and the datapath blocks, with
AXI4-Stream ports.

Ports (the Verilog port names are the member names; clock ``clk``, synchronous reset ``rst``):

* ``s_axis_tdata`` (signed), ``s_axis_tvalid``, ``s_axis_tready``, ``s_axis_tlast``: one
  element per beat. A sequence is, with ``initial_state=True``, ``h0`` (``L*D*H_out`` codes in
  the ``hidden`` format, state-major as in PyTorch) then ``c0`` (``L*D*H`` codes, ``cell``),
  then ``x`` time-major (``T*I`` codes, ``x`` format), ``tlast`` on the last element.
* ``m_axis_tdata`` (signed), ``m_axis_tvalid``, ``m_axis_tready``, ``m_axis_tlast``: the
  results of a sequence, in the order and shape of ``lstmfpga predict --raw``: the head output
  (``out`` codes for ``last``, ``T*out`` for ``all``) or, without a head, the output sequence
  (``T*D*H_out``, time-major); then, with ``with_states=True``, ``h_n`` (``L*D*H_out``) and
  ``c_n`` (``L*D*H``). ``tlast`` marks the last element.
* ``error`` (sticky until reset): a sequence was longer than ``max_seq_len``, not a whole
  number of ``x`` vectors, or ended inside the initial state. Such a sequence is still
  processed with the whole vectors it had (up to ``max_seq_len``; none: it is dropped).
* ``busy``: a sequence is being computed or drained (with ``buffers=2`` also: a loaded
  sequence waits for the computation).
* ``saturation``: per cycle, the number of values of each tensor that did not fit their
  format (fields ``preact``, ``cell``, ``hidden``, ``hn``, ``head_out``;
  :mod:`.saturation`), what the golden model counts; the AXI top's ``SATURATION_*``
  registers add them up.
* ``w`` (``w__payload``, ``w__valid``, ``w__ready`` in Verilog): the weight port, an
  AXI4-Stream-style input of :attr:`LSTMAccelerator.weight_load_layout` beats
  (:attr:`.weights.WeightMemory.load_layout`): bit 0 ``bias`` (1: bias memory, 0: weight
  memory), then ``addr`` (the word address), then ``data`` (the word, lane-major as
  :func:`.layout.pack` packs it), exactly the beats of :func:`lstmfpga.runtime.pack_weights`.
  One word per beat, written at the transfer's clock edge, in any order. ``w__ready`` is
  high exactly while ``busy`` is low (between sequences, also while a sequence is being
  loaded) and low while a sequence is computed, drained or waits to be computed, so a matrix
  is never rewritten while it is streamed; a sequence whose ``tlast`` is taken after a word's
  transfer runs with it. Leave ``w__valid`` low to keep the weights the design was built with.

Operation (``buffers=1``): LOAD (accept the sequence into on-chip buffers) → COMPUTE (the
schedule of :mod:`.schedule`, no interaction with the ports) → DRAIN (stream the results;
back-pressure on ``m_axis`` only pauses the drain) → LOAD. With ``buffers=2`` (two banks of
the input and result buffers, :mod:`.banks`) the three overlap: sequence ``k + 1`` loads
while ``k`` is computed and ``k - 1`` drained (:class:`~.sequencer.OverlapControl`). See
``docs/accelerator.md`` for the schedule and the cycle model (:mod:`.cycles`), and
:mod:`.sequence_top` / :mod:`.stream_top` for the datapath of each mode.
"""

from __future__ import annotations

from amaranth.hdl import signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.model import QuantizedModel
from .banks import bank_plan, physical_depth
from .layout import WeightLayout
from .plans import buffer_plan, memory_plan, multiplier_plan, state_format, stream_buffer_plan
from .regroup import emitter_cycles
from .saturation import saturation_layout
from .schedule import Schedule
from .stream_geometry import StreamGeometry
from .weights import WeightMemory

__all__ = [
    "BUFFERS",
    "DEFAULT_BUFFERS",
    "MODES",
    "LSTMAccelerator",
    "check_buffers",
    "check_mode",
    "default_cells",
    "emitter_cycles",
]

#: Operating modes: whole sequences buffered (``"sequence"``), or step by step (``"stream"``).
MODES = ("sequence", "stream")
#: Banks of the input and result buffers in sequence mode: 1 (one sequence at a time) or 2
#: (the next sequence loads and the previous one drains while one is computed).
BUFFERS = (1, 2)
#: Sequence mode's ``buffers`` when none is given.
DEFAULT_BUFFERS = 2


def check_mode(mode, model, name: str = "mode") -> str:
    """``mode`` if ``model`` can be built in it, else ``ValueError`` (one line; ``name`` is
    the option's name in the message, e.g. ``--mode``)."""
    if mode not in MODES:
        raise ValueError(f"{name} must be 'sequence' or 'stream', not {mode!r}")
    if mode == "stream" and model.num_directions != 1:
        stream = "--mode stream" if name.startswith("-") else f"{name} 'stream'"
        raise ValueError(
            f"{stream} needs a unidirectional model, not a bidirectional one: the reverse "
            "direction needs the whole sequence before its first step"
        )
    return mode


def check_buffers(buffers, mode: str = "sequence", name: str = "buffers") -> int:
    """The banks of the input and result buffers ``buffers`` asks for in ``mode`` (``None``:
    the mode's default, 2 in sequence mode, 1 in stream mode), else ``ValueError`` (one
    line; ``name`` is the option's name in the message, e.g. ``--buffers``)."""
    if buffers is None:
        return DEFAULT_BUFFERS if mode == "sequence" else 1
    if mode == "stream" and buffers != 1:
        raise ValueError(f"{name} does not apply to mode 'stream' (its rings overlap the "
                         f"steps already), not {buffers!r}")  # fmt: skip
    if not isinstance(buffers, int) or isinstance(buffers, bool) or buffers not in BUFFERS:
        raise ValueError(f"{name} must be 1 or 2, not {buffers!r}")
    return buffers


def default_cells(layout: WeightLayout) -> int:
    """The fewest parallel activation + cell units ``V`` that keep the matrix-vector unit
    from ever waiting on them: a full gate row group completes up to ``u = ceil(P / 4)``
    hidden units, which leave ``V`` per cycle, while its beats take ``chunks = ceil((I_l +
    H_out) / S)`` cycles; the MVU never waits when ``ceil(u / V) <= chunks`` for every
    layer, i.e. ``V = ceil(u / min chunks)`` (at most ``H``; 1 unless ``ceil(P / 4)``
    exceeds a gate row's beats)."""
    if not isinstance(layout, WeightLayout):
        raise TypeError(f"layout must be a WeightLayout, not {layout!r}")
    gates = [mx for mx in layout.matrices if mx.kind == "gates"]
    units = -(-layout.lanes // 4)
    chunks = min(mx.chunks for mx in gates)
    return min(-(-units // chunks), max(mx.rows for mx in gates) // 4)


class LSTMAccelerator(wiring.Component):
    """A whole quantized LSTM (+ head) in hardware; see the module docstring for the ports.

    Parameters
    ----------
    model : QuantizedModel
    lanes : int
        MAC lanes P of the matrix-vector unit, 1 .. ``4 * hidden_size``; a matrix costs
        ``ceil(rows / P)`` row groups (the last one padded with zero rows).
    simd : int
        Columns per beat S (multipliers per lane), 1 .. the longest matrix row; a matrix
        costs ``ceil(rows / P) * ceil(cols / S)`` beats. The data buffers get ``S`` read
        ports (one per slot; synthesis replicates a block RAM per extra read port).
    cells : int or None
        Parallel activation + cell units V, 1 .. ``hidden_size``: up to V hidden units leave
        the regrouper per cycle (:func:`.regroup.emitter_cycles`). ``None``:
        :func:`default_cells`. The buffers the cells write (``cmem``, and ``obuf*`` and
        ``hnbuf`` without a projection, ``mbuf`` with one) get V write ports (``cmem`` also V
        combinational read ports), which synthesis builds from distributed RAM or flip-flops
        rather than block RAM when V > 1.
    max_seq_len : int
        Longest sequence the buffers hold.
    with_states : bool
        Append ``h_n`` and ``c_n`` to every result.
    initial_state : bool
        Every input sequence starts with ``h0`` and ``c0``.
    mode : str
        ``"sequence"`` (the default: LOAD, COMPUTE, DRAIN per sequence, up to
        ``max_seq_len`` steps) or ``"stream"`` (unidirectional models: each step's output
        leaves as soon as it is computed, sequences of any length, state kept across
        sequences on request; ``max_seq_len`` does not apply). Stream mode adds the inputs
        ``s_axis_tuser`` (on the first element of a step's ``x`` vector: reset the state
        before that step) and ``keep_state`` (1: carry the state over ``tlast``; 0, also
        when left undriven: reset it before every sequence's first step). See
        ``docs/accelerator.md`` and :mod:`.stream_top`.
    buffers : int
        Sequence mode: 2 (the default) gives the input buffers (``xbuf``, ``h0buf``,
        ``c0buf``) and the result buffers (``headbuf`` or ``outbuf``, ``hnbuf``, ``cmem``
        with ``with_states``) two banks, so that sequence ``k + 1`` loads while ``k`` is
        computed and ``k - 1`` drained (about twice their RAM: :meth:`bank_plan`); 1: one
        sequence at a time (LOAD, COMPUTE, DRAIN). Stream mode: 1 (its rings overlap
        already).
    """

    def __init__(
        self,
        model: QuantizedModel,
        *,
        lanes: int = 4,
        simd: int = 1,
        cells: int | None = None,
        max_seq_len: int = 64,
        with_states: bool = False,
        initial_state: bool = False,
        mode: str = "sequence",
        buffers: int | None = None,
    ):
        try:
            if not isinstance(model, QuantizedModel):
                raise TypeError(f"model must be a QuantizedModel, not {model!r}")
            check_mode(mode, model)
            buffers = check_buffers(buffers, mode)
            if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or max_seq_len < 1:
                raise ValueError(f"max_seq_len must be a positive integer, not {max_seq_len!r}")
            self._layout = WeightLayout.of(model, lanes, simd)  # validates lanes, simd
            H = model.hidden_size
            if cells is None:
                cells = default_cells(self._layout)
            elif not isinstance(cells, int) or isinstance(cells, bool) or not 1 <= cells <= H:
                raise ValueError(f"cells must be in 1..{H} (hidden_size), not {cells!r}")
        except (TypeError, ValueError):
            self._MustUse__silence = True  # a rejected design is not an unused one
            raise
        self._model, self._lanes, self._simd, self._cells = model, lanes, simd, cells
        self._max_seq_len, self._mode, self._buffers = max_seq_len, mode, buffers
        self._with_states, self._initial_state = bool(with_states), bool(initial_state)
        self._schedule = Schedule.of(self._layout)
        f = model.formats
        states = [f["hidden"].bits, state_format(model).bits]
        self._in_bits = max([f["x"].bits] + (states if self._initial_state else []))
        self._out_bits = max([model.output_format.bits] + (states if self._with_states else []))
        probe = WeightMemory(self._layout)  # only for its load port's payload layout
        probe._MustUse__silence = True
        self._load_layout = probe.load_layout
        super().__init__(
            {
                "s_axis_tdata": In(signed(self._in_bits)),
                "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "m_axis_tdata": Out(signed(self._out_bits)),
                "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1),
                "m_axis_tlast": Out(1),
                "busy": Out(1),
                "error": Out(1),
                "saturation": Out(saturation_layout(lanes, cells)),
                "w": In(stream.Signature(self._load_layout)),
            }
            | ({"s_axis_tuser": In(1), "keep_state": In(1)} if mode == "stream" else {})
        )

    # -- parameters ---------------------------------------------------------------------------
    @property
    def model(self) -> QuantizedModel:
        return self._model

    @property
    def layout(self) -> WeightLayout:
        return self._layout

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def simd(self) -> int:
        return self._simd

    @property
    def cells(self) -> int:
        return self._cells

    @property
    def max_seq_len(self) -> int:
        return self._max_seq_len

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def buffers(self) -> int:
        return self._buffers

    @property
    def with_states(self) -> bool:
        return self._with_states

    @property
    def initial_state(self) -> bool:
        return self._initial_state

    @property
    def weight_load_layout(self):
        """Payload layout of the weight port ``w`` (:attr:`.weights.WeightMemory.load_layout`)."""
        return self._load_layout

    @property
    def stream_geometry(self) -> StreamGeometry:
        """The stream lengths of this build (:class:`~.stream_geometry.StreamGeometry`)."""
        return StreamGeometry.of(
            self._model, with_states=self._with_states, initial_state=self._initial_state
        )

    def result_length(self, T: int) -> int:
        """Number of output elements for a sequence of ``T`` timesteps."""
        return self.stream_geometry.output_length(T)

    def input_length(self, T: int) -> int:
        """Number of input elements for a sequence of ``T`` timesteps."""
        return self.stream_geometry.input_length(T)

    def buffer_plan(self) -> dict[str, tuple[int, int]]:
        """On-chip data buffers as built: ``{name: (width, depth)}`` (:func:`.plans.buffer_plan`,
        with ``buffers=2`` the memories of :meth:`bank_plan`, in stream mode
        :func:`.plans.stream_buffer_plan`)."""
        if self._mode == "stream":
            from .stream_schedule import RING, SLOTS

            return stream_buffer_plan(self._model, ring=RING, slots=SLOTS,
                                      initial_state=self._initial_state,
                                      with_states=self._with_states)  # fmt: skip
        if self._buffers == 2:
            return {name: (width, physical_depth(depth, count))
                    for name, (width, depth, count) in self.bank_plan().items()}  # fmt: skip
        return buffer_plan(self._model, self._max_seq_len, initial_state=self._initial_state,
                           with_states=self._with_states)  # fmt: skip

    def bank_plan(self) -> dict[str, tuple[int, int, int]]:
        """``buffers=2``: ``{name: (width, words per bank, banks)}`` (:func:`.banks.bank_plan`);
        ``buffers=1``: every buffer of :meth:`buffer_plan` with one bank."""
        if self._buffers == 2:
            return bank_plan(self._model, self._max_seq_len, initial_state=self._initial_state,
                             with_states=self._with_states)  # fmt: skip
        return {name: (width, depth, 1) for name, (width, depth) in self.buffer_plan().items()}

    def memory_plan(self) -> list[dict]:
        """Every memory of the design: weights, biases, activation ROMs and buffers."""
        return memory_plan(self._model, self._layout, self.buffer_plan())

    def multiplier_plan(self) -> list[dict]:
        """Hardware multipliers: where, how many, operand widths (the MVU's ``P * S``, then
        those of the ``V`` activation + cell units)."""
        return multiplier_plan(self._model, self._layout, self._cells)

    # -- hardware -----------------------------------------------------------------------------
    def elaborate(self, platform):
        if self._mode == "stream":
            from .stream_top import elaborate_stream

            return elaborate_stream(self)
        from .sequence_top import elaborate_sequence

        return elaborate_sequence(self)
