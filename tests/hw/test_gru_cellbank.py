# amaranth: UnusedElaboratable=no
"""The GRU cell bank (Amaranth simulator, random idle cycles, a fast and a slow consumer):
beats of 1 .. V units in the MVU's GRU rows, with ``h_prev`` read from a state memory, give
the golden GRU's hidden states on the units of a real golden step, and what
``gru_cell_bank_reference`` says on random codes over the whole formats; nothing more comes
out; its Verilog is lint-clean."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Signal, signed
from amaranth.lib.memory import Memory
from helpers.gru_models import random_gru_qmodel, step_inputs
from helpers.streams import Harness, expect_quiet, get_all, put_all, simulate

from lstmfpga.export.spec import SpecError
from lstmfpga.hw.gru_cell import gru_cell_latency
from lstmfpga.hw.gru_cellbank import GRUCellBank, gru_cell_bank_reference
from lstmfpga.hw.gru_layout import gru_gate_rows, gru_rows_reference
from lstmfpga.sim.lint import verilator_lint
from lstmfpga.testing import random_qmodel

# name: (V, quantization config)
CASES = {
    "V1-q16": (1, dict(preset="q16")),
    "V2-w8a8": (2, dict(preset="w8a8")),
    "V3-w8a16-half_up": (3, dict(preset="w8a16", rounding="half_up")),
    "V4-w4a8-truncate-wrap": (4, dict(preset="w4a8", rounding="truncate", overflow="wrap")),
}
H = 5


def _golden_beats(model, x_codes, V, rng):
    """One beat per ``V`` units of every step of layer 0, forward: the MVU's rows for the
    step (``gru_rows_reference``), ``h_prev`` at ``h_addr`` in the state memory (``zero_h``
    at the first step, whose ``h_prev`` is 0); the expected values are the golden ``h``."""
    _, steps = step_inputs(model, x_codes)
    s, rows = steps[(0, 0)], gru_gate_rows(model, 0, 0)
    codes = gru_rows_reference(rows, s["u"], s["h_prev"])
    B, T = codes.shape[:2]
    hmem, beats, want = [], [], []
    for b in range(B):
        for t in range(T):
            base = len(hmem)
            hmem.extend(s["h_prev"][b, t].tolist())
            for j in range(0, H, V):
                count = min(V, H - j)
                filler = rng.integers(-9, 10, 4 * (V - count)).tolist()  # rows past count
                beat_rows = codes[b, t, 4 * j : 4 * (j + count)].tolist() + filler
                beats.append((beat_rows, count, base + j, t == 0))
                want.append(s["h"][b, t, j : j + count].tolist())
    return hmem, beats, want


def _random_beats(model, V, depth, rng, count_beats=12):
    """Beats of random sums: ones that requantize into ``preact`` / ``hn`` (codes scaled up,
    random low bits) and, in one beat of four, any accumulator codes."""
    f, acc = model.formats, model.acc
    targets = (("preact", f["preact"]),) * 3 + (("hn", f["hn"]),)
    beats = []
    for n in range(count_beats):
        count = int(rng.integers(1, V + 1))
        if n % 4 == 3:
            rows = rng.integers(acc.min_code, acc.max_code + 1, (V, 4))
        else:
            rows = np.stack([
                rng.integers(fmt.min_code, fmt.max_code + 1, V) << model.requant_shift(role)
                for role, fmt in targets
            ], axis=1)  # fmt: skip
        beats.append((rows.reshape(-1).tolist(), count, int(rng.integers(0, depth - count + 1)),
                      bool(rng.random() < 0.25)))  # fmt: skip
    return beats


def run(name, idle, stall):
    V, config = CASES[name]
    seed = sum(map(ord, name))
    model, x_codes = random_gru_qmodel(seed, config, hidden_size=H, batch=2, steps=3)
    rng = np.random.default_rng(seed)
    hmem, golden, want = _golden_beats(model, x_codes, V, rng)
    hidden = model.formats["hidden"]
    hmem += rng.integers(hidden.min_code, hidden.max_code + 1, 8).tolist()
    beats = golden + _random_beats(model, V, len(hmem), rng)
    dut = GRUCellBank(model, cells=V, in_bits=model.acc.bits + 2, h_depth=len(hmem))

    pulses = {role: Signal(16, name=f"pulses_{role}") for role in ("preact", "hn", "hidden")}

    def memory(m):
        m.submodules.hmem = mem = Memory(shape=signed(hidden.bits), depth=len(hmem), init=hmem)
        for k in range(V):
            port, member = mem.read_port(domain="comb"), getattr(dut, f"h_r{k}")
            m.d.comb += [port.addr.eq(member.addr), member.data.eq(port.data)]
        # the saturation pulses, summed over the run
        for role, counts in (("preact", [dut.sat_preact[k] for k in range(V)]),
                             ("hn", list(dut.sat_hn)), ("hidden", list(dut.sat_h))):  # fmt: skip
            m.d.sync += pulses[role].eq(pulses[role] + sum(counts))

    rng_in, rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    got = []

    async def producer(ctx):
        payloads = [{"rows": rows, "count": count, "h_addr": addr, "zero_h": zero}
                    for rows, count, addr, zero in beats]  # fmt: skip
        await put_all(ctx, dut.i, payloads, rng=rng_in, idle=idle)

    async def consumer(ctx):
        for out in await get_all(ctx, dut.o, len(beats), rng=rng_out, stall=stall):
            got.append(out["h"][: out["count"]])
        await expect_quiet(ctx, dut.o, 2 * dut.latency)
        counted.update({role: ctx.get(signal) for role, signal in pulses.items()})

    counted = {}
    simulate(Harness(dut, memory), producer, consumer)
    saturation = {"preact": 0, "hn": 0, "hidden": 0}
    reference = gru_cell_bank_reference(model, beats, hmem, saturation)
    assert counted == saturation and saturation["preact"] > 0  # the random beats saturate
    return got, reference, want


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("idle", "stall"), [(0.0, 0.0), (0.3, 0.5)], ids=["fast", "slow"])
def test_gru_cell_bank_gives_the_golden_states_and_the_reference(name, idle, stall):
    got, reference, want = run(name, idle, stall)
    assert got == reference
    assert got[: len(want)] == want  # the golden step's units: the golden hidden states


def test_parameters_latency_and_errors():
    model, _ = random_gru_qmodel(1, dict(preset="w8a8"), hidden_size=2)
    bank = GRUCellBank(model, cells=2, in_bits=model.acc.bits, h_depth=4)
    assert bank.cells == 2
    assert bank.latency == gru_cell_latency(model.tables["sigmoid"], model.tables["tanh_gate"])
    assert bank.arith.hidden == model.formats["hidden"]
    with pytest.raises(ValueError, match=r"^cells must be an integer >= 1, not 0$"):
        GRUCellBank(model, cells=0, in_bits=model.acc.bits, h_depth=4)
    with pytest.raises(ValueError, match=rf"^in_bits must be an integer >= {model.acc.bits}, "):
        GRUCellBank(model, cells=1, in_bits=16, h_depth=4)
    with pytest.raises(ValueError, match=r"^h_depth must be an integer >= 1, not 0$"):
        GRUCellBank(model, cells=1, in_bits=model.acc.bits, h_depth=0)
    _, lstm = random_qmodel(1, input_size=2, hidden_size=2)
    with pytest.raises(SpecError, match=r"runs GRU qmodels only, not cell 'lstm'$"):
        GRUCellBank(lstm, cells=1, in_bits=64, h_depth=4)
    with pytest.raises(TypeError, match=r"^model must be a QuantizedModel, not 'model'$"):
        GRUCellBank("model", cells=1, in_bits=64, h_depth=4)


def test_verilog_is_lint_clean(tmp_path):
    model, _ = random_gru_qmodel(2, dict(preset="w8a8"), hidden_size=3)
    bank = GRUCellBank(model, cells=3, in_bits=model.acc.bits, h_depth=6)
    (tmp_path / "gru_bank.v").write_text(verilog.convert(bank, name="gru_bank"))
    assert verilator_lint(tmp_path, "gru_bank") == ""
