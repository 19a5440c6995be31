"""What an accelerator build holds: its data buffers, memories and multipliers.

One definition, read by :class:`~.accelerator.LSTMAccelerator` (which builds the buffers),
its stages (:class:`~.fetch.VectorFetch` reads some, :class:`~.writeback.WriteBack` writes
others) and the manifest (:mod:`.verilog`).
"""

from __future__ import annotations

__all__ = ["addr_width", "buffer_plan", "memory_plan", "multiplier_plan"]


def addr_width(depth: int) -> int:
    """Address bits of a buffer of ``depth`` words as the accelerator builds it
    (``Memory(depth=max(2, depth))``: never a 0-bit address)."""
    return max(1, (max(2, depth) - 1).bit_length())


def buffer_plan(model, max_seq_len: int, *, initial_state: bool, with_states: bool) -> dict:
    """On-chip data buffers: ``{name: (width, depth)}`` (only those the build needs):
    ``xbuf`` (inputs), ``obuf0``/``obuf1`` (layer outputs, alternating), ``cmem`` (cell
    states), ``mbuf`` (cell outputs before the projection), ``h0buf``, ``hnbuf``,
    ``headbuf``."""
    q, Tmax = model, max_seq_len
    f = q.formats
    H, Ho, D, L = q.hidden_size, q.output_size, q.num_directions, q.num_layers
    LD = L * D
    plan = {"xbuf": (f["x"].bits, Tmax * q.input_size)}
    for bank in range(min(L, 2)):
        plan[f"obuf{bank}"] = (f["hidden"].bits, Tmax * D * Ho)
    plan["cmem"] = (f["cell"].bits, LD * H)
    if q.proj_size:
        plan["mbuf"] = (f["hidden"].bits, H)
    if initial_state:
        plan["h0buf"] = (f["hidden"].bits, LD * Ho)
    if with_states:
        plan["hnbuf"] = (f["hidden"].bits, LD * Ho)
    if q.head is not None:
        rows = q.head.out_features * (Tmax if q.head.mode == "all" else 1)
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
    those of the ``cells`` activation + cell units)."""
    f, tables, V = model.formats, model.tables, cells
    vec_bits = max(f["x"].bits, f["hidden"].bits)
    muls = [{"where": "matrix-vector unit lanes", "count": layout.lanes * layout.simd,
             "a_bits": layout.weight_bits, "b_bits": vec_bits}]  # fmt: skip
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
