"""Quantization configs: presets, TOML overrides, and one-line errors for impossible settings."""

from __future__ import annotations

import dataclasses
import os

import pytest
from quant_helpers import exactly

from lstmfpga.quant.calibrate import quantize
from lstmfpga.quant.config import (
    DATA_ROLES,
    PRESETS,
    ROLES,
    WEIGHT_ROLES,
    ActivationRule,
    QuantConfig,
    RoleRule,
    load_config,
)
from lstmfpga.quant.fixed import FormatError
from lstmfpga.testing import random_inputs, random_spec


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_with_every_role(name):
    config = QuantConfig.preset(name)
    assert config.name == name
    assert set(config.roles) == set(ROLES) == set(WEIGHT_ROLES) | set(DATA_ROLES)
    assert (config.rounding, config.overflow, config.headroom) == ("half_even", "saturate", 1.25)
    assert config.acc_bits is None
    assert config.roles["gate"] == RoleRule(16, 14)
    eight = {"x", "hidden", "head_out"} if name in ("w8a8", "w4a8") else set()
    assert {r: config.roles[r].bits for r in DATA_ROLES} == {
        r: 8 if r in eight else 16 for r in DATA_ROLES
    }
    assert config.sigmoid == ActivationRule(step_log2=-5, range_log2=4, interpolate=True, guard=4)
    assert config.tanh == ActivationRule(step_log2=-7, range_log2=3, interpolate=True, guard=4)


def test_preset_weight_widths():
    q16, w8a16 = QuantConfig.preset("q16"), QuantConfig.preset("w8a16")
    assert all(q16.roles[r].bits == 16 for r in WEIGHT_ROLES)
    eight = {"w_ih": 8, "w_hh": 8, "bias": 16, "w_hr": 8, "head_w": 8, "head_b": 16}
    assert {r: w8a16.roles[r].bits for r in WEIGHT_ROLES} == eight
    assert {r: QuantConfig.preset("w8a8").roles[r].bits for r in WEIGHT_ROLES} == eight
    # w4a8: 4-bit LSTM weights, the head keeps 8 bits
    assert {r: QuantConfig.preset("w4a8").roles[r].bits for r in WEIGHT_ROLES} == {
        **eight,
        "w_ih": 4,
        "w_hh": 4,
        "w_hr": 4,
    }


@pytest.mark.parametrize(
    "config",
    [
        QuantConfig.preset("q16"),
        QuantConfig.preset("w8a16"),
        dataclasses.replace(
            QuantConfig.preset("q16"),
            name="mine",
            rounding="truncate",
            overflow="wrap",
            acc_bits=48,
            sigmoid=ActivationRule(step_log2=-4, range_log2=None, interpolate=False, guard=0),
        ),
    ],
)
def test_to_dict_round_trips(config):
    assert QuantConfig.from_dict(config.to_dict()) == config


def test_toml_overrides_a_preset(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'preset = "w8a16"\n'
        'name = "w8a16-wide-cell"\n'
        'rounding = "half_up"\n'
        "acc_bits = 40\n"
        "[roles]\n"
        "w_hh = { bits = 12 }\n"
        "cell = { bits = 18, frac = 12 }\n"
        "[activation]\n"
        "tanh = { step_log2 = -6 }\n"
    )
    config = load_config(path)
    base = QuantConfig.preset("w8a16")
    assert config.name == "w8a16-wide-cell"
    assert config.rounding == "half_up" and config.overflow == base.overflow
    assert config.acc_bits == 40
    assert config.roles["w_hh"] == RoleRule(12) and config.roles["cell"] == RoleRule(18, 12)
    assert config.roles["w_ih"] == base.roles["w_ih"]
    assert config.tanh == dataclasses.replace(base.tanh, step_log2=-6)
    assert config.sigmoid == base.sigmoid


def test_load_config_preset_argument_is_the_default_base(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[roles]\nx = { bits = 12 }\n")
    assert load_config(path, preset="w8a16").roles["w_ih"] == RoleRule(8)
    path.write_text('preset = "q16"\n[roles]\nx = { bits = 12 }\n')
    assert load_config(path, preset="w8a16").roles["w_ih"] == RoleRule(16)  # the file wins
    assert load_config(preset="w8a16") == QuantConfig.preset("w8a16")
    assert load_config() == QuantConfig.preset("q16")


def _toml_error(text: str) -> str:
    with pytest.raises(FormatError) as info:
        QuantConfig.from_toml(text, source="c.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'preset = "q16"\n[roles]\nw_ih = { bits = 16, frac = 17 }',
            "c.toml: role w_ih: frac must be in -62..16 (at most bits), not 17",
        ),
        (
            'preset = "q16"\n[roles]\nx = { bits = 0 }',
            "c.toml: role x: bits must be in 2..32, not 0",
        ),
        (
            'preset = "q16"\n[roles]\nx = { bits = 33 }',
            "c.toml: role x: bits must be in 2..32, not 33",
        ),
        (
            'preset = "q16"\n[roles]\nx = { bits = 16.5 }',
            "c.toml: role x: bits must be an integer, not 16.5",
        ),
        (
            'preset = "q16"\n[roles]\nforget = { bits = 16 }',
            "c.toml: unknown role 'forget'; roles are " + ", ".join(ROLES),
        ),
        (
            'preset = "q16"\n[roles]\nx = { frac = 3 }',
            "c.toml: role x must be {bits = N} or {bits = N, frac = M}, not {'frac': 3}",
        ),
        (
            'preset = "q16"\n[roles]\nx = { bits = 8, sign = false }',
            (
                "c.toml: role x must be {bits = N} or {bits = N, frac = M}, "
                "not {'bits': 8, 'sign': False}"
            ),
        ),
        (
            'preset = "q16"\n[roles]\ngate = { bits = 16, frac = 15 }',
            "c.toml: gate format must hold 1.0: frac must be in 0..bits - 2 (14), not 15",
        ),
        (
            'preset = "q16"\nacc_bits = 24',
            "c.toml: acc_bits 24 cannot hold a w_ih x x product (needs at least 32 bits)",
        ),
        ('preset = "q16"\nacc_bits = 63', "c.toml: acc_bits must be an integer in 2..62, not 63"),
        ('preset = "q17"', "c.toml: preset must be one of q16, w8a16, w8a8, w4a8, not 'q17'"),
        (
            'preset = "q16"\nbits = 16',
            (
                "c.toml: unknown key(s) bits; keys are preset, name, rounding, overflow, headroom, "
                "acc_bits, roles, activation"
            ),
        ),
        (
            'preset = "q16"\nrounding = "nearest"',
            "c.toml: rounding must be one of ('half_even', 'half_up', 'truncate'), not 'nearest'",
        ),
        (
            'preset = "q16"\noverflow = "clamp"',
            "c.toml: overflow must be one of ('saturate', 'wrap'), not 'clamp'",
        ),
        ('preset = "q16"\nheadroom = 0.5', "c.toml: headroom must be a number in 1..16, not 0.5"),
        (
            'preset = "q16"\n[activation]\nsigmoid = { step = -5 }',
            (
                "c.toml: activation.sigmoid must be a table with keys among guard, interpolate, "
                "range_log2, step_log2, not {'step': -5}"
            ),
        ),
        (
            'preset = "q16"\n[activation]\nrelu = { step_log2 = -5 }',
            (
                "c.toml: activation must be a table with keys sigmoid, tanh, "
                "not {'relu': {'step_log2': -5}}"
            ),
        ),
        (
            'preset = "q16"\n[activation]\ntanh = { guard = 17 }',
            "c.toml: activation.tanh: guard must be an integer in 0..16, not 17",
        ),
        (
            'preset = "q16"\n[activation]\ntanh = { interpolate = 1 }',
            "c.toml: activation.tanh: interpolate must be true or false, not 1",
        ),
        (
            "[roles]\nx = { bits = 16 }",
            (
                "c.toml: missing role(s) w_ih, w_hh, bias, w_hr, head_w, head_b, preact, gate, "
                "cell, hidden, head_out (name a preset or give every role)"
            ),
        ),
        ('preset = "q16"\nroles = 3', "c.toml: roles must be a table, not 3"),
    ],
)
def test_bad_configs_raise_one_line_errors(text, message):
    assert _toml_error(text) == message


def test_invalid_toml_names_the_source():
    assert _toml_error("preset = ").startswith("c.toml is not valid TOML: ")


def test_load_config_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(FormatError, match=exactly(f"cannot read config {missing}: ", False)):
        load_config(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "q16"\n[roles]\nx = { bits = 99 }\n')
    with pytest.raises(FormatError, match=exactly(f"{bad}: role x: bits must be in 2..32, not 99")):
        load_config(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"x = " + b"[" * 50_000 + b"]" * 50_000, "{path} is not valid TOML: nested too deeply"),
        (b"name = '\xff\xfe'", "config {path} is not UTF-8 text"),
        (b"# " + b"x" * (1 << 20), "config {path} is 1048578 bytes, more than the 1048576-byte"),
    ],
    ids=["deeply-nested", "not-utf8", "oversized"],
)
def test_hostile_config_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=exactly(message.format(path=path), False)):
        load_config(path)
    with pytest.raises(
        FormatError, match=exactly(f"cannot read config {tmp_path}: is a directory")
    ):
        load_config(tmp_path)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(
        FormatError, match=exactly(f"cannot read config {fifo}: not a regular file")
    ):
        load_config(fifo)


def test_role_rule_frac_may_not_exceed_bits():
    assert RoleRule(8, 8).frac == 8
    assert RoleRule(8, -4).frac == -4
    with pytest.raises(FormatError, match=exactly("frac must be in -62..8 (at most bits), not 9")):
        RoleRule(8, 9)


def test_accumulator_too_small_for_a_model_is_found_at_quantization():
    """acc_bits passes the config's single-product check but not this model's dot products."""
    spec = random_spec(3, input_size=8, hidden_size=8)
    config = dataclasses.replace(QuantConfig.preset("q16"), acc_bits=33)
    with pytest.raises(FormatError) as info:
        quantize(spec, random_inputs(3, 4, 5, 8), config)
    needed = quantize(spec, random_inputs(3, 4, 5, 8)).acc.bits
    assert str(info.value) == (
        f"accumulator of 33 bits cannot hold a dot product: needs {needed} bits"
    )
    assert quantize(spec, random_inputs(3, 4, 5, 8), dataclasses.replace(config, acc_bits=needed))
