"""The compiled (numba) golden datapath gives the NumPy float path's results bit for bit.

``golden.run`` compiles the step's element-wise work (``quant/datapath_jit.py``) when numba is
importable, ``LSTMFPGA_NO_JIT`` is unset and the run has at least ``JIT_MIN_CELLS`` cell
updates; otherwise it runs the NumPy float path (``quant/datapath_float.py``). Every test here
runs both on the same codes (the threshold lowered to 0 for the compiled one) and compares the
output codes, final states, head, traces and saturation counts, on every preset, rounding
mode, the edge geometries and saturating inputs, and checks the choice of path. The NumPy
path itself is pinned to the restated pipeline in ``test_golden_fast.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from golden_reference import random_states, restated_run

from lstmfpga.quant import golden
from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import QuantConfig, RoleRule
from lstmfpga.quant.datapath_float import FloatDatapath
from lstmfpga.quant.datapath_int import IntDatapath
from lstmfpga.quant.datapath_jit import JitDatapath, code_map
from lstmfpga.quant.fixed import ROUNDING_MODES
from lstmfpga.testing import random_inputs, random_spec

PRESETS = ("q16", "w8a16", "w8a8", "w4a8")

# (random_spec kwargs, batch, seq): every feature once, and the edges of the buffers.
GEOMETRIES = [
    ({"num_layers": 2, "bidirectional": True, "proj_size": 3, "hidden_size": 5, "head": "all"},
     3, 5),
    ({"num_layers": 3, "hidden_size": 4, "head": "last"}, 4, 6),
    ({"bidirectional": True, "head": "last"}, 1, 1),
    ({"hidden_size": 1, "bias": False, "num_layers": 2}, 2, 7),
    ({"proj_size": 1, "hidden_size": 6, "head": "last", "head_bias": False}, 5, 4),
    ({"bidirectional": True, "num_layers": 2, "bias": False}, 1, 3),
]  # fmt: skip


def _run_both(monkeypatch, model, x_codes, h0=None, c0=None, trace=True):
    """``golden.run`` on the NumPy float path and on the compiled one (asserting which ran)."""
    results = []
    for no_jit, expected in (("1", FloatDatapath), ("", JitDatapath)):
        monkeypatch.setenv("LSTMFPGA_NO_JIT", no_jit)
        monkeypatch.setattr(golden, "JIT_MIN_CELLS", 0)
        assert type(golden.datapath(model, 1)) is expected
        results.append(golden.run(model, x_codes, h0, c0, trace=trace))
    return results


def _assert_identical(numpy_result, jit_result) -> None:
    for name in ("output", "h_n", "c_n"):
        a, b = getattr(numpy_result, name), getattr(jit_result, name)
        assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b), name
    assert jit_result.output.flags.c_contiguous
    if numpy_result.head is None:
        assert jit_result.head is None
    else:
        assert np.array_equal(numpy_result.head, jit_result.head)
    assert jit_result.saturation == numpy_result.saturation
    assert numpy_result.trace.keys() == jit_result.trace.keys()
    for key, rec in numpy_result.trace.items():
        assert rec.keys() == jit_result.trace[key].keys()
        for name, values in rec.items():
            assert np.array_equal(jit_result.trace[key][name], values), (key, name)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("preset", PRESETS)
def test_compiled_path_equals_numpy_path_on_every_geometry(monkeypatch, preset, rounding):
    """Inputs at 4x the calibration range and random initial states: every code, state,
    traced value and saturation count of the compiled path is the NumPy path's, and the
    preact and cell saturation paths are exercised."""
    saturated = set()
    for seed, (kwargs, batch, seq) in enumerate(GEOMETRIES):
        spec = random_spec(seed, **kwargs)
        calib = random_inputs(seed, batch, seq, spec.input_size)
        config = dataclasses.replace(QuantConfig.preset(preset), rounding=rounding)
        model = quantize(spec, calib, config)
        x_codes = golden.quantize_inputs(model, calib * 4.0)
        h0, c0 = random_states(model, batch, np.random.default_rng(seed))
        numpy_result, jit_result = _run_both(monkeypatch, model, x_codes, h0, c0)
        _assert_identical(numpy_result, jit_result)
        saturated |= {role for role, n in jit_result.saturation.items() if n}
    assert {"preact", "cell"} <= saturated


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
def test_compiled_path_equals_the_restated_pipeline_where_hidden_and_preact_saturate(
    monkeypatch, rounding
):
    """A hidden format narrower than 1.0 (so ``m = o * tanh_cell(c)`` saturates), a
    projection and a head, inputs beyond the range: the compiled path's codes and counts
    are the restated pipeline's."""
    spec = random_spec(6, input_size=4, hidden_size=5, num_layers=2, proj_size=2, head="all")
    fixed = {"w_ih": RoleRule(8, 4), "w_hh": RoleRule(8, 4), "w_hr": RoleRule(8, 4),
             "bias": RoleRule(16, 8), "x": RoleRule(8, 4), "hidden": RoleRule(8, 8),
             "preact": RoleRule(16, 7)}  # fmt: skip
    config = QuantConfig.preset("q16")
    config = dataclasses.replace(config, roles={**config.roles, **fixed}, rounding=rounding)
    x = random_inputs(6, 5, 6, spec.input_size)
    model = quantize(spec, x, config)
    assert model.requant_shift("preact") > 0
    x_codes = golden.quantize_inputs(model, x * 3.0)
    LD, B = model.num_layers, x.shape[0]
    h0 = np.zeros((LD, B, model.output_size), np.int64)
    c0 = np.zeros((LD, B, model.hidden_size), np.int64)
    numpy_result, jit_result = _run_both(monkeypatch, model, x_codes, h0, c0)
    _assert_identical(numpy_result, jit_result)
    output, _, head, counts = restated_run(model, x_codes, h0, c0)
    assert np.array_equal(jit_result.output, output) and np.array_equal(jit_result.head, head)
    assert jit_result.saturation == counts and counts["hidden"] > 0


def test_compiled_path_with_a_left_shifted_preact_equals_numpy_path(monkeypatch):
    """A preact format finer than the accumulator (negative shift: an exact left shift, no
    rounding; the accumulator far beyond 2**52 at times) with inputs far beyond it."""
    spec = random_spec(3, input_size=3, hidden_size=4, scale=20.0, head="last")
    x = random_inputs(3, 4, 5, 3) * 50
    config = QuantConfig.preset("q16")
    roles = {r: RoleRule(16, 0) for r in ("w_ih", "w_hh", "bias", "head_w", "head_b", "x",
                                           "hidden")}  # fmt: skip
    config = dataclasses.replace(config, roles={**config.roles, **roles,
                                                "preact": RoleRule(16, 4)})  # fmt: skip
    model = quantize(spec, x, config)
    assert model.requant_shift("preact") < 0
    numpy_result, jit_result = _run_both(monkeypatch, model, golden.quantize_inputs(model, x))
    _assert_identical(numpy_result, jit_result)
    assert jit_result.saturation["preact"] > 0


def test_code_maps_are_the_table_rule_on_every_code():
    """The compiled path's maps (int16 for the presets) hold ``ActivationTable.lookup`` of
    every input code, indexed by ``code - min_code``."""
    spec = random_spec(0)
    model = quantize(spec, random_inputs(0, 4, 5, spec.input_size))
    for table in model.tables.values():
        fmt = table.in_fmt
        codes = np.arange(fmt.min_code, fmt.max_code + 1, dtype=np.int64)
        values = code_map(table)
        assert values.dtype == np.int16 and not values.flags.writeable
        assert np.array_equal(values, table.lookup(codes))


def test_the_path_depends_on_numba_the_environment_and_the_run_size(monkeypatch):
    """Compiled at ``JIT_MIN_CELLS`` cell updates and above (numba is installed here),
    NumPy below it or with ``LSTMFPGA_NO_JIT=1``, int64 where float64 is not exact; a run
    of the threshold's size gives the same codes either way."""
    spec = random_spec(1, input_size=3, hidden_size=8)
    x = random_inputs(1, 64, 16, 3)
    model = quantize(spec, x)
    cells = 64 * 16 * 8
    monkeypatch.setattr(golden, "JIT_MIN_CELLS", cells)
    monkeypatch.delenv("LSTMFPGA_NO_JIT", raising=False)
    assert type(golden.datapath(model, cells)) is JitDatapath
    assert type(golden.datapath(model, cells - 1)) is FloatDatapath
    compiled = golden.run(model, golden.quantize_inputs(model, x))
    for value in ("1", "yes"):
        monkeypatch.setenv("LSTMFPGA_NO_JIT", value)
        assert type(golden.datapath(model, cells)) is FloatDatapath
    plain = golden.run(model, golden.quantize_inputs(model, x))
    assert np.array_equal(compiled.output, plain.output)
    monkeypatch.setenv("LSTMFPGA_NO_JIT", "0")
    assert type(golden.datapath(model, cells)) is JitDatapath
    wrap = quantize(spec, x, dataclasses.replace(QuantConfig.preset("q16"), overflow="wrap"))
    assert type(golden.datapath(wrap, cells)) is IntDatapath


def test_the_float64_product_runs_on_torch_blas_when_torch_is_imported(monkeypatch):
    """With torch imported (and ``TORCH_BLAS`` set) the compiled path's float64 gate product
    is ``torch.mm`` on the operands' memory, exact at the accumulator's bound (every term at
    its largest magnitude); float32 products, or ``TORCH_BLAS`` unset, stay NumPy's. A q16
    model gives the same codes either way, and the NumPy path's."""
    import torch  # noqa: F401  (the path needs torch imported; it never imports it)

    from lstmfpga.quant import datapath_jit

    rng = np.random.default_rng(4)
    v = rng.choice([-(2.0**15), 2.0**15 - 1], (6, 81))
    wt = rng.choice([-(2.0**15), 2.0**15 - 1], (81, 8)) * 2.0**-9
    acc = np.empty((6, 8))
    product = datapath_jit.torch_product(v, wt, acc)
    product()
    exact = v.astype(np.int64) @ (wt * 2.0**9).astype(np.int64)  # below 2**38: no rounding
    assert np.array_equal(acc * 2.0**9, exact.astype(np.float64))
    assert datapath_jit.torch_product(*(a.astype(np.float32) for a in (v, wt, acc))) is None
    spec = random_spec(2, input_size=5, hidden_size=12, num_layers=2, bidirectional=True)
    x = random_inputs(2, 9, 7, 5)
    model = quantize(spec, x)
    assert model.acc.bits > 25  # a float64 product
    x_codes = golden.quantize_inputs(model, x * 3.0)
    products = []
    real = datapath_jit.torch_product
    record = lambda *a: products.append(real(*a)) or products[-1]  # noqa: E731
    monkeypatch.setattr(datapath_jit, "torch_product", record)
    numpy_result, torch_result = _run_both(monkeypatch, model, x_codes)
    assert len(products) == 4 and None not in products  # 2 layers x 2 directions
    monkeypatch.setattr(datapath_jit, "TORCH_BLAS", False)
    products.clear()
    _, openblas_result = _run_both(monkeypatch, model, x_codes)
    assert products == [None] * 4
    _assert_identical(numpy_result, torch_result)
    _assert_identical(numpy_result, openblas_result)


@pytest.mark.parametrize(("bits", "dtype"), [(8, np.int16), (17, np.int32), (32, np.int32)])
def test_layer_buffers_hold_every_code_of_x_and_hidden(monkeypatch, bits, dtype):
    """The compiled path's layer buffers are the narrowest integers holding every ``x`` and
    ``hidden`` code; inputs beyond the range (codes at both ends of the formats) and two
    bidirectional layers with a projection give the NumPy path's codes at every width."""
    from lstmfpga.quant.datapath_jit import layer_dtype

    spec = random_spec(5, input_size=3, hidden_size=6, num_layers=2, bidirectional=True,
                       proj_size=4, head="all")  # fmt: skip
    x = random_inputs(5, 4, 6, 3)
    config = QuantConfig.preset("w8a8")
    roles = {**config.roles, "x": RoleRule(bits), "hidden": RoleRule(bits)}
    model = quantize(spec, x, dataclasses.replace(config, roles=roles))
    assert FloatDatapath.exact_for(model) and layer_dtype(model) == dtype
    x_codes = golden.quantize_inputs(model, x * 4.0)
    fmt = model.formats["x"]
    assert x_codes.min() == fmt.min_code and x_codes.max() == fmt.max_code
    h0, c0 = random_states(model, 4, np.random.default_rng(5))
    _assert_identical(*_run_both(monkeypatch, model, x_codes, h0, c0))
