"""The banks of a double-buffered sequence-mode accelerator (``buffers=2``).

With two banks of a buffer, two neighbouring stages work on two sequences at once, each in
its own bank: the *input* buffers are written by the loader into the bank of the sequence
being loaded while the computation reads the bank of the sequence being computed; the
*result* buffers are written by the computation while the drain reads the bank of the
previous sequence. Sequence ``k`` uses bank ``k mod 2`` in every stage
(:class:`~.sequencer.OverlapControl` counts the banks).

* input: ``xbuf``, ``h0buf`` and ``c0buf`` (the initial cell state, or a GRU's ``h0`` for
  its state memory; the cell bank reads it instead of ``cmem`` at a pass's first step);
* result: ``headbuf`` or, without a head, ``outbuf`` (a copy of the top layer's output
  buffer: every write to it is also made to ``outbuf``, so the fetch stage keeps its own
  read ports and the drain reads ``outbuf``), ``hnbuf``, and ``cmem`` when an LSTM's
  ``c_n`` is drained from it (``with_states``);
* single: the other layer's output buffer, ``mbuf``, and ``cmem`` otherwise (used within
  one sequence's computation only).

A bank is the top address bit: word ``a`` of bank ``b`` is at ``b * 2**w + a``, with ``w``
the address bits of one bank (:func:`.plans.addr_width`), so no adder stands in front of a
block RAM; the memory is ``2**w + depth`` words deep.
"""

from __future__ import annotations

from amaranth.hdl import Cat

from .plans import addr_width, buffer_plan, state_format

__all__ = ["bank_plan", "banked", "physical_depth", "read", "write"]


def bank_plan(model, max_seq_len: int, *, initial_state: bool, with_states: bool) -> dict:
    """``{name: (width, words per bank, banks)}`` of every buffer of a ``buffers=2`` build,
    in the order they are built (:func:`.plans.buffer_plan`'s, then ``c0buf``,
    ``outbuf``)."""
    q = model
    plan = buffer_plan(q, max_seq_len, initial_state=initial_state, with_states=with_states)
    two = {"xbuf", "h0buf", "headbuf", "hnbuf"}
    if with_states and q.cell == "lstm":
        two.add("cmem")  # c_n is drained from it
    banks = {name: (width, depth, 2 if name in two else 1) for name, (width, depth) in plan.items()}
    if initial_state:
        banks["c0buf"] = (state_format(q).bits, plan["cmem"][1], 2)
    if q.head is None:
        banks["outbuf"] = (*plan[f"obuf{(q.num_layers - 1) % 2}"], 2)
    return banks


def physical_depth(depth: int, banks: int) -> int:
    """Words of the memory that holds ``banks`` (1 or 2) banks of ``depth`` words."""
    return depth if banks == 1 else (1 << addr_width(depth)) + depth


def banked(addr, bank, banks: int):
    """The memory address of word ``addr`` of bank ``bank`` (``banks`` 1: ``addr``)."""
    return addr if banks == 1 else Cat(addr, bank)


def read(m, member, port, bank=None, banks: int = 1, *, comb: bool = False):
    """Join a stage's read port ``member`` (``addr``, ``en`` unless ``comb``, ``data``) to
    the memory port ``port``, in bank ``bank``."""
    m.d.comb += [port.addr.eq(banked(member.addr, bank, banks)), member.data.eq(port.data)]
    if not comb:
        m.d.comb += port.en.eq(member.en)


def write(m, member, port, bank=None, banks: int = 1):
    """Join a stage's write port ``member`` (``addr``, ``data``, ``en``) to the memory port
    ``port``, in bank ``bank``."""
    m.d.comb += [
        port.addr.eq(banked(member.addr, bank, banks)),
        port.data.eq(member.data),
        port.en.eq(member.en),
    ]
