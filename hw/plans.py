"""What an accelerator build holds: its data buffers, memories and multipliers.

One definition, read by :class:`~.accelerator.LSTMAccelerator` (which builds the buffers),
its stages (:class:`~.fetch.VectorFetch` reads some, :class:`~.writeback.WriteBack` writes
others) and the manifest (:mod:`.verilog`).
"""

from __future__ import annotations

__all__ = [
    "addr_width",
    "buffer_plan",
    "memory_plan",
    "multiplier_plan",
    "state_format",
    "stream_buffer_plan",
]


def state_format(model):
    """The format of ``cmem``'s words, the state each cell unit reads back at the next step:
    an LSTM's cell state ``c`` (``cell``), a GRU's hidden state ``h`` (``hidden``: a GRU has
    no cell state, its ``h_prev`` comes from ``cmem`` as an LSTM's ``c_prev`` does)."""
    return model.formats["hidden" if model.cell == "gru" else "cell"]


def addr_width(depth: int) -> int:
    """Address bits of a buffer of ``depth`` words as the accelerator builds it
    (``Memory(depth=max(2, depth))``: never a 0-bit address)."""
    return max(1, (max(2, depth) - 1).bit_length())


def buffer_plan(model, max_seq_len: int, *, initial_state: bool, with_states: bool) -> dict:
    """On-chip data buffers: ``{name: (width, depth)}`` (only those the build needs):
    ``xbuf`` (inputs), ``obuf0``/``obuf1`` (layer outputs, alternating), ``cmem`` (cell
    states; a GRU's hidden states, :func:`state_format`), ``mbuf`` (cell outputs before the
    projection), ``h0buf``, ``hnbuf``, ``headbuf``."""
    q = model
    return _plan(q, max_seq_len * q.input_size, max_seq_len * q.num_directions * q.output_size,
                 max_seq_len, initial_state=initial_state, with_states=with_states)  # fmt: skip


def stream_buffer_plan(model, *, ring: int, slots: int, initial_state: bool,
                       with_states: bool) -> dict:  # fmt: skip
    """The buffers of a stream-mode build (unidirectional): ``xbuf`` a ring of ``ring``
    input steps; ``obuf0``/``obuf1`` the outputs of the even/odd layers for ``slots`` steps
    (word ``(slot * ceil(L/2) + layer // 2) * H_out + j``); ``cmem``; ``mbuf`` with a
    projection; ``h0buf`` and ``c0buf`` (the initial state a reset restores) with
    ``initial_state``; ``hnbuf``; ``headbuf`` (``slots`` steps of head outputs for ``all``,
    one for ``last``)."""
    q = model
    per_bank = -(-q.num_layers // 2)
    words = slots * per_bank * q.output_size
    return _plan(q, ring * q.input_size, words, slots, initial_state=initial_state,
                 with_states=with_states, c0=initial_state)  # fmt: skip


def _plan(q, x_words: int, out_words: int, head_steps: int, *, initial_state: bool,
          with_states: bool, c0: bool = False) -> dict:  # fmt: skip
    """The buffers, in the order they are built: the sizes that depend on the mode given
    (``xbuf`` and ``obuf*`` words, steps of an every-step head's outputs)."""
    f = q.formats
    H, Ho, LD = q.hidden_size, q.output_size, q.num_layers * q.num_directions
    plan = {"xbuf": (f["x"].bits, x_words)}
    for bank in range(min(q.num_layers, 2)):
        plan[f"obuf{bank}"] = (f["hidden"].bits, out_words)
    plan["cmem"] = (state_format(q).bits, LD * H)
    if q.proj_size:
        plan["mbuf"] = (f["hidden"].bits, H)
    if initial_state:
        plan["h0buf"] = (f["hidden"].bits, LD * Ho)
    if c0:
        plan["c0buf"] = (state_format(q).bits, LD * H)  # a GRU's: h0 (its state's reset value)
    if with_states:
        plan["hnbuf"] = (f["hidden"].bits, LD * Ho)
    if q.head is not None:
        rows = q.head.out_features * (head_steps if q.head.mode == "all" else 1)
        plan["headbuf"] = (f["head_out"].bits, rows)
    return plan


def memory_plan(model, layout, buffers: dict) -> list[dict]:
    """Every memory of the design: weights, biases, activation ROMs and ``buffers``."""
    P = layout.lanes
    mems = [
        {"name": "weights", "kind": "ram", "width": P * layout.simd * layout.weight_bits,
         "depth": layout.depth},
        {"name": "biases", "kind": "ram", "width": P * layout.acc.bits,
         "depth": layout.bias_depth},
    ]  # fmt: skip
    for name, table in model.tables.items():
        mems.append({"name": f"table_{name}", "kind": "rom", "width": table.rom_word_bits,
                     "depth": table.size + 1})  # fmt: skip
    for name, (width, depth) in buffers.items():
        mems.append({"name": name, "kind": "ram", "width": width, "depth": depth})
    return mems


def multiplier_plan(model, layout, cells: int) -> list[dict]:
    """Hardware multipliers: where, how many, operand widths (the MVU's ``P * S``, then
    those of the ``cells`` activation + cell units; a GRU's cells:
    :func:`.gru_cell.gru_cell_multipliers`)."""
    f, tables, V = model.formats, model.tables, cells
    vec_bits = max(f["x"].bits, f["hidden"].bits)
    muls = [{"where": "matrix-vector unit lanes", "count": layout.lanes * layout.simd,
             "a_bits": layout.weight_bits, "b_bits": vec_bits}]  # fmt: skip
    if model.cell == "gru":
        from ..quant.gru_golden import GRUCellArithmetic
        from .gru_cell import gru_cell_multipliers

        return muls + gru_cell_multipliers(GRUCellArithmetic.of(model), V)
    for where, table, count in (
        ("gate activation interpolation", tables["sigmoid"], 4 * V),
        ("cell tanh interpolation", tables["tanh_cell"], V),
    ):
        if table.interpolates:
            muls.append({"where": where, "count": count, "a_bits": table.slope_bits,
                         "b_bits": table.shift + 1})  # fmt: skip
    muls += [
        {"where": "cell f*c_prev", "count": V, "a_bits": f["gate"].bits,
         "b_bits": f["cell"].bits},
        {"where": "cell i*g and o*tanh(c)", "count": 2 * V, "a_bits": f["gate"].bits,
         "b_bits": f["gate"].bits},
    ]  # fmt: skip
    return muls
