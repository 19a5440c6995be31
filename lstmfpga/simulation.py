"""Simulating a quantized model: check the inputs, run a simulator and the golden model,
build the bit-accuracy report.

:func:`simulate_model` is what ``lstmfpga simulate`` and :meth:`lstmfpga.design.Design.simulate`
run; :func:`check_spec` and :func:`check_labels` check what it is given.
"""

from __future__ import annotations

import time

import numpy as np

from lstmfpga.errors import CLIError, SimulationError
from lstmfpga.sim.cocotb_build import SIMULATORS
from lstmfpga.sim_target import SimTarget

__all__ = ["SIMULATORS", "check_labels", "check_spec", "simulate_model", "stateful_golden"]


def stateful_golden(model, x_codes, h0=None, c0=None):
    """The golden model on the rows of ``x_codes`` ``(B, T, I)`` taken as consecutive
    segments of one signal (stream mode's ``--stateful``): row ``b`` starts from the final
    state of row ``b - 1`` (row 0 from ``h0[:, 0]``, ``c0[:, 0]``, default zeros). Returns a
    :class:`~lstmfpga.quant.golden.GoldenResult` whose batch index is the segment: its
    ``prediction`` per segment (for a ``last`` head, the head at the segment's last step),
    ``h_n``/``c_n`` the state at each segment's end. The every-step outputs are those of
    the golden model on the whole signal (``x_codes.reshape(1, B * T, I)``)."""
    from lstmfpga.quant import golden

    x_codes = np.asarray(x_codes)
    parts, h, c = [], None, None
    if h0 is not None:
        h = np.asarray(h0)[:, :1]
    if c0 is not None:
        c = np.asarray(c0)[:, :1]
    for b in range(x_codes.shape[0]):
        part = golden.run(model, x_codes[b : b + 1], h, c)
        parts.append(part)
        h, c = part.h_n, part.c_n
    first = parts[0]
    return type(first)(
        np.concatenate([p.output for p in parts]),
        np.concatenate([p.h_n for p in parts], axis=1),
        None if first.c_n is None else np.concatenate([p.c_n for p in parts], axis=1),  # GRU
        None if first.head is None else np.concatenate([p.head for p in parts]),
        {k: sum(p.saturation[k] for p in parts) for k in first.saturation},
        {},
    )


def check_spec(model, spec) -> dict:
    """Check that ``spec`` is the spec ``model`` was quantized from; return the report's
    ``spec`` section.

    A model that records ``spec_hash`` (every model quantized by this lstmfpga) must match
    ``spec.content_hash()`` exactly, else :class:`~lstmfpga.errors.CLIError`. A model
    quantized before hashes were recorded (``spec_hash`` None) cannot be checked: the spec
    is accepted when its geometry matches, and the section says it was not checked."""
    for name in (
        "input_size",
        "hidden_size",
        "num_layers",
        "bidirectional",
        "proj_size",
    ):
        if getattr(spec, name) != getattr(model, name):
            raise CLIError(
                f"--spec does not match the quantized model: {name} is "
                f"{getattr(spec, name)!r}, the model's {getattr(model, name)!r}"
            )
    spec_head = None if spec.head is None else (spec.head.mode, spec.head.out_features)
    model_head = None if model.head is None else (model.head.mode, model.head.out_features)
    if spec_head != model_head:
        raise CLIError(
            f"--spec does not match the quantized model: its head is {spec_head!r}, "
            f"the model's {model_head!r}"
        )
    digest = spec.content_hash()
    if model.spec_hash is None:
        return {
            "checked": False,
            "hash": digest,
            "note": (
                "the quantized model records no spec_hash (it predates them): the spec's "
                "geometry matches, its weights could not be checked; quantize again to "
                "record the hash"
            ),
        }
    if digest != model.spec_hash:
        raise CLIError(
            f"--spec is not the spec the quantized model was quantized from: its content "
            f"hash is {digest[:16]}..., the model's spec_hash {model.spec_hash[:16]}..."
        )
    return {
        "checked": True,
        "hash": digest,
        "note": "spec_hash of the quantized model matches",
    }


def check_labels(model, labels, batch: int) -> np.ndarray:
    """``labels`` as int64 class indices, one per sequence, for a ``last``-head classifier;
    else :class:`~lstmfpga.errors.CLIError` (one line)."""
    if model.head is None or model.head.mode != "last":
        raise CLIError("--labels needs a model with a 'last' head")
    n = model.head.out_features
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (batch,):
        raise CLIError(
            f"--labels must be {batch} integer class indices (shape ({batch},)), not "
            f"{labels.dtype} {labels.shape}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= n))
    if bad.size:
        raise CLIError(
            f"--labels must be class indices in 0..{n - 1}, not {int(labels[bad[0]])} "
            f"(sequence {int(bad[0])}; {bad.size} out of range)"
        )
    return labels.astype(np.int64)


def simulate_model(
    model,
    x,
    *,
    simulator: str,
    lanes: int | None = None,
    max_seq_len: int | None = None,
    stall: float = 0.0,
    seed: int = 0,
    waves=None,
    build_dir=None,
    spec=None,
    labels=None,
    h0=None,
    c0=None,
    with_states: bool = False,
    cycle_budget: int | None = None,
    progress=None,
    jobs: int | None = None,
    simd: int | None = None,
    rtl=None,
    cells: int | None = None,
    mode: str = "sequence",
    stateful: bool = False,
    beat_elements: int | None = None,
    buffers: int | None = None,
):
    """Quantize ``x`` (and ``h0``/``c0``), run ``simulator`` and the golden model, build the
    report.

    ``x`` ``(batch, seq, features)`` floats; ``h0`` ``(L*D, batch, H_out)`` and ``c0``
    ``(L*D, batch, H)`` float initial states, quantized as ``predict --h0c0`` does (the
    hardware is then built with ``initial_state`` and streams them in); ``with_states``:
    build the hardware with ``with_states``, so that its final states are checked too.
    ``spec``: the float spec (checked with :func:`check_spec`) for fixed-vs-float errors;
    ``labels``: class per sequence (:func:`check_labels`). ``cycle_budget``: cycles each
    sequence may take (default from the cycle model, :mod:`lstmfpga.sim.budget`). ``jobs``:
    simulator processes sharing the sequences (Icarus/Verilator; default: the number of
    CPUs); the results and the report do not depend on it (but for its ``timing``).
    ``lanes`` (default 8), ``simd`` (columns per MAC lane and beat, default 1; recorded in
    the report's ``settings`` when not 1) and ``cells`` (parallel activation + cell units,
    default the accelerator's; recorded when given) are ``LSTMAccelerator``'s.

    ``rtl``: a design folder written by ``lstmfpga generate`` (either top) to run instead
    of generating hardware (Icarus or Verilator: its Verilog as it is). The model must fit it
    (geometry, every format, the tables: :func:`lstmfpga.runtime.check_model`, and the
    hardware the model would generate with the folder's options must be the folder's);
    ``lanes``, ``simd``, ``cells``, ``max_seq_len`` default to the folder's and must equal
    them when given; ``h0``/``with_states`` need a folder built with them (a folder built with
    ``initial_state`` gets zero states when ``h0`` is not given; one built with
    ``with_states`` has its final states checked). When the model's weights are not the
    ones built into the folder's hardware they are streamed in through its weight port
    before the first sequence (every simulator process loads them); ``settings`` records
    ``rtl`` and ``weights_reloaded``. One line errors name a mismatch.

    ``mode``: ``"sequence"`` or ``"stream"`` (the accelerator's; stream mode needs a
    unidirectional model and has no ``max_seq_len``). ``stateful`` (stream mode): the
    rows of ``x`` are consecutive segments of one signal, the state carried
    from row ``b`` to row ``b + 1`` (the hardware's ``keep_state``; ``h0``/``c0`` of row 0
    start it); the golden side is :func:`stateful_golden`, which equals the golden model on
    the whole signal. ``settings`` records ``mode`` (when not ``sequence``) and ``stateful``.
    ``beat_elements``: with ``rtl``, must be the design's elements per beat. With ``rtl``,
    ``mode`` ``"stream"`` (and ``stateful``) needs a stream-mode folder, ``stateful`` also
    its ``keep_state`` input (the plain top). ``buffers``: the accelerator's (sequence mode:
    1 or 2 banks of the input and result buffers; default its default); with ``rtl``, must
    be the design's; recorded in ``settings`` when given.

    Returns ``(report, arrays)``. ``arrays`` are in ``predict``'s shapes, so that they
    compare with ``np.array_equal`` to what ``predict --raw`` writes: ``rtl`` and ``golden``
    (prediction codes: ``(batch, out)`` for a ``last`` head, ``(batch, seq, out)`` for
    ``all``, ``(batch, seq, D*H_out)`` without a head); with ``with_states`` also
    ``rtl_h_n``, ``rtl_c_n``, ``golden_h_n``, ``golden_c_n`` (as ``predict --raw --states``:
    ``(L*D, batch, H_out)``, ``(L*D, batch, H)``) and their scales ``hidden_scale``,
    ``cell_scale``; ``float`` (the spec's prediction, with ``spec``) and ``scale`` (value =
    code * scale).
    """
    _check_simulation(simulator, stall, cycle_budget, jobs, waves)
    _check_mode(model, mode, stateful, rtl, spec, max_seq_len)
    _check_rtl(rtl, simulator, beat_elements)
    started_all = time.perf_counter()
    spec_check = None if spec is None else check_spec(model, spec)
    expected, x_codes, h0_codes, c0_codes, labels = _golden_side(model, x, h0, c0, labels, stateful)
    T = x_codes.shape[1]
    initial_state = h0 is not None or c0 is not None
    options = dict(lanes=lanes, simd=simd, cells=cells, max_seq_len=max_seq_len, buffers=buffers,
                   with_states=with_states, initial_state=initial_state)  # fmt: skip
    target = _target(model, T, rtl, mode, stateful, beat_elements, options)
    result, version, timing = _run_simulator(
        target.design, x_codes, h0_codes, c0_codes, simulator=simulator, stall=stall,
        seed=seed, waves=waves, build_dir=build_dir, progress=progress,
        cycle_budget=cycle_budget, jobs=jobs, stateful=stateful,
    )  # fmt: skip
    run = dict(stall=stall, seed=seed, cycle_budget=cycle_budget, started=started_all)
    return _report(model, x, h0, c0, T, target, result, version, timing, expected,
                   spec=spec, spec_check=spec_check, labels=labels, simulator=simulator,
                   **run)  # fmt: skip


def _check_rtl(rtl, simulator: str, beat_elements) -> None:
    """``beat_elements`` only with ``rtl``, and ``rtl`` only in a Verilog simulator."""
    if beat_elements is not None and rtl is None:
        raise SimulationError(
            "beat_elements needs rtl (an AXI design generated with --beat-elements)"
        )
    if rtl is not None and simulator == "amaranth":
        raise SimulationError(
            "rtl runs a design folder's Verilog: simulator must be icarus or verilator, "
            "not 'amaranth'"
        )


def _golden_side(model, x, h0, c0, labels, stateful: bool):
    """``(expected, x_codes, h0_codes, c0_codes, labels)``: the golden model's result
    (:func:`stateful_golden`'s when ``stateful``), the codes the hardware is given and the
    checked labels. The golden model runs first: it validates ``x`` and the states
    (one-line errors) and is exactly what ``predict --raw`` computes."""
    from lstmfpga.quant import golden

    _, expected = golden.predict(model, x, h0, c0)
    x_codes = golden.quantize_inputs(model, x)
    if labels is not None:
        labels = check_labels(model, labels, x_codes.shape[0])
    h0_codes, c0_codes = (
        None if v is None else model.formats[role].quantize(v, model.rounding)
        for v, role in ((h0, "hidden"), (c0, "cell"))
    )
    if stateful:
        expected = stateful_golden(model, x_codes, h0_codes, c0_codes)
    return expected, x_codes, h0_codes, c0_codes, labels


def _target(model, T: int, rtl, mode: str, stateful: bool, beat_elements, options: dict):
    """The hardware to run: the design folder ``rtl`` (checked against ``model``), or a new
    accelerator built with ``options`` in ``mode``; ``settings`` records ``stateful``."""
    if rtl:
        target = SimTarget.folder(model, rtl, T, **options, beat_elements=beat_elements,
                                  mode=mode, stateful=stateful)  # fmt: skip
    else:
        target = SimTarget.new(model, T, **options, mode=mode)
    if stateful:
        target.settings["stateful"] = True
    return target


def _report(model, x, h0, c0, T, target, result, version, timing, expected, *, spec,
            spec_check, labels, simulator, stall, seed, cycle_budget, started):  # fmt: skip
    """The bit-accuracy report and the arrays of :func:`simulate_model`."""
    from lstmfpga.hw.cycles import CycleModel
    from lstmfpga.sim.report import build_report

    float_prediction = None
    if spec is not None:
        from lstmfpga.export import reference

        float_prediction = reference.forward(spec, x, h0, c0).prediction
    acc, geometry = target.acc, target.geometry
    settings = {"stall": stall, "seed": seed, "initial_state": acc.initial_state,
                "with_states": acc.with_states}  # fmt: skip
    settings |= {} if cycle_budget is None else {"cycle_budget": int(cycle_budget)}
    settings |= target.settings
    report = build_report(
        model=model, geometry=geometry, T=T, rtl=result.outputs, golden=expected,
        simulator=simulator, simulator_version=version, lanes=acc.lanes,
        max_seq_len=acc.max_seq_len, run_cycles=result.cycles,
        total_cycles=result.total_cycles, wall_seconds=result.wall_seconds,
        cycle_model=CycleModel.of(acc) if acc.mode == "sequence" else None,
        rtl_error=result.error,
        float_prediction=float_prediction, labels=labels, settings=settings,
        spec_check=spec_check,
        timing=timing | {"end_to_end_seconds": round(time.perf_counter() - started, 3)},
    )  # fmt: skip
    arrays = _result_arrays(model, geometry, T, result.outputs, expected, acc.with_states)
    if float_prediction is not None:
        arrays["float"] = np.asarray(float_prediction, dtype=np.float64)
    return report, arrays


def _check_mode(model, mode, stateful, rtl, spec, max_seq_len) -> None:
    """Refuse a bad ``mode``/``stateful`` combination (one line each)."""
    from lstmfpga.hw.accelerator import check_mode

    try:
        check_mode(mode, model)
    except ValueError as error:
        raise SimulationError(str(error)) from None
    if mode == "stream":  # (with rtl: SimTarget.folder checks that the folder's is stream)
        if max_seq_len is not None:
            raise SimulationError(
                f"max_seq_len {max_seq_len} does not apply to mode 'stream' (any length)"
            )
    if stateful:
        if mode != "stream":
            raise SimulationError("stateful needs mode 'stream' (state carried across rows)")
        if spec is not None:
            raise SimulationError(
                "stateful with a float spec: the float reference runs whole sequences; "
                "leave out the spec"
            )


def _check_simulation(simulator: str, stall: float, cycle_budget, jobs, waves) -> None:
    """Refuse bad :func:`simulate_model` options before anything is built (one line each)."""
    if simulator not in SIMULATORS:
        raise SimulationError(
            f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}"
        )
    if not 0 <= stall < 1:
        raise SimulationError(f"stall must be a probability in [0, 1), not {stall!r}")
    if cycle_budget is not None and (isinstance(cycle_budget, bool) or cycle_budget < 1):
        raise SimulationError(
            f"cycle_budget must be a positive number of cycles, not {cycle_budget!r}"
        )
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise SimulationError(f"jobs must be a positive integer, not {jobs!r}")
    if simulator == "amaranth" and waves is not None and not str(waves).endswith(".vcd"):
        raise SimulationError(f"waves with the amaranth simulator must be a .vcd file, not {waves}")
    if simulator != "amaranth":
        from lstmfpga.sim.cocotb_flow import check_simulator

        check_simulator(simulator)  # before building anything


def _run_simulator(design, x_codes, h0_codes, c0_codes, *, simulator, stall, seed, waves,
                   build_dir, progress, cycle_budget, jobs, stateful=False):  # fmt: skip
    """Run ``design`` (an accelerator; a folder's design only in Icarus/Verilator) in
    ``simulator``: ``(result, simulator version, report timing)``."""
    stream = {}
    if stateful:  # state kept over tlast; row 0 starts from h0/c0 (or zeros)
        resets = np.zeros(x_codes.shape[:2], dtype=bool)
        resets[0, 0] = True
        stream = {"keep_state": True, "resets": resets}
    if simulator == "amaranth":
        from amaranth import __version__ as amaranth_version

        from lstmfpga.sim.amaranth_sim import run_amaranth

        started = time.perf_counter()
        result = run_amaranth(
            design, x_codes, h0_codes, c0_codes, in_stall=stall, out_stall=stall, seed=seed,
            waves=None if waves is None else str(waves), cycle_budget=cycle_budget, **stream,
        )  # fmt: skip
        result.wall_seconds = time.perf_counter() - started
        timing = {"build_seconds": 0.0, "build_cached": False, "jobs": 1, "chunks": 1}
        return result, amaranth_version, timing
    from lstmfpga.sim.cocotb_flow import run_cocotb

    result = run_cocotb(
        design, x_codes, h0_codes, c0_codes, simulator=simulator, in_stall=stall,
        out_stall=stall, seed=seed, waves=waves, build_dir=build_dir, progress=progress,
        cycle_budget=cycle_budget, jobs=jobs, **stream,
    )  # fmt: skip
    build = result.meta["build"]
    timing = {
        "build_seconds": float(build["seconds"]),
        "build_cached": bool(build["cached"]),
        "jobs": int(result.meta["jobs"]),
        "chunks": int(result.meta["chunks"]),
    }
    return result, result.meta["simulator_version"], timing


def _result_arrays(model, geometry, T: int, outputs: list, expected, with_states: bool) -> dict:
    """The hardware's elements in predict's shapes (missing elements, if any, as 0: the
    report counts them as mismatches), beside the golden model's."""
    from lstmfpga.sim.streams import unpack_outputs

    n = geometry.output_length(T)
    parts = []
    for out in outputs:
        padded = np.zeros(n, dtype=np.int64)
        padded[: min(n, out.size)] = out[:n]
        parts.append(unpack_outputs(geometry, padded, T))
    shape = (len(outputs), *geometry.prediction_shape(T))
    arrays = {
        "rtl": np.stack([p["prediction"] for p in parts]).reshape(shape),
        "golden": np.asarray(expected.prediction, dtype=np.int64),
        "scale": np.float64(model.output_format.lsb),
    }
    if with_states:
        arrays["rtl_h_n"] = np.stack([p["h_n"] for p in parts], axis=1)
        arrays["golden_h_n"] = np.asarray(expected.h_n, dtype=np.int64)
        arrays["hidden_scale"] = np.float64(model.formats["hidden"].lsb)
        if geometry.cell_state:  # an LSTM's c_n (a GRU has none)
            arrays["rtl_c_n"] = np.stack([p["c_n"] for p in parts], axis=1)
            arrays["golden_c_n"] = np.asarray(expected.c_n, dtype=np.int64)
            arrays["cell_scale"] = np.float64(model.formats["cell"].lsb)
    return arrays
