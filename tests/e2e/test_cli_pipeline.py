"""The command line chains export → quantize → predict → generate on a real PyTorch model."""

import numpy as np
import torch

from lstmfpga.cli import main
from lstmfpga.export import files
from lstmfpga.quant import golden
from lstmfpga.quant.model import QuantizedModel


class Regressor(torch.nn.Module):
    head_mode = "all"

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def test_export_quantize_predict_generate(tmp_path, capsys):
    torch.manual_seed(0)
    model = Regressor().eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.normal(0, 1, (16, 10, 3)))
    np.save(tmp_path / "x.npy", x := rng.normal(0, 1, (4, 7, 3)))

    assert main(["export", str(tmp_path / "model.pt"), "--head", "all",
                 "-o", str(tmp_path / "spec")]) == 0  # fmt: skip
    assert main(["quantize", str(tmp_path / "spec"), "--calib", str(tmp_path / "calib.npy"),
                 "--preset", "q16", "-o", str(tmp_path / "q")]) == 0  # fmt: skip
    assert main(["predict", str(tmp_path / "q"), "--inputs", str(tmp_path / "x.npy"),
                 "--raw", "-o", str(tmp_path / "codes.npy")]) == 0  # fmt: skip
    assert main(["predict", str(tmp_path / "spec"), "--inputs", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "float.npy")]) == 0  # fmt: skip

    q = QuantizedModel.load(tmp_path / "q")
    codes = np.load(tmp_path / "codes.npy")
    expected = golden.run(q, golden.quantize_inputs(q, x)).head
    assert codes.shape == (4, 7, 2) and codes.dtype == np.int64
    assert np.array_equal(codes, expected)
    with torch.no_grad():
        want = model(torch.tensor(x, dtype=torch.float32)).numpy()
    got = q.output_format.dequantize(codes)
    assert np.abs(got - want).max() < 5e-3  # q16 tolerance (docs/numerics.md)
    assert np.abs(np.load(tmp_path / "float.npy") - want).max() < 1e-5  # float32 torch

    assert main(["info", str(tmp_path / "q")]) == 0
    assert "head_out" in capsys.readouterr().out
    assert main(["generate", str(tmp_path / "q"), "--lanes", "4", "--max-seq-len", "8",
                 "--memories", "readmemh", "-o", str(tmp_path / "rtl")]) == 0  # fmt: skip
    assert (tmp_path / "rtl" / "lstm_accel.v").is_file()
    assert (tmp_path / "rtl" / "manifest.json").is_file()

    # The hardware, simulated: its dump compares as it is with predict --raw's codes.
    assert main(["simulate", str(tmp_path / "q"), "--inputs", str(tmp_path / "x.npy"),
                 "--sim", "amaranth", "--lanes", "4", "--dump", str(tmp_path / "d.npz"),
                 "--report", str(tmp_path / "r.json")]) == 0  # fmt: skip
    with np.load(tmp_path / "d.npz") as dump:
        assert dump["rtl"].shape == (4, 7, 2) and np.array_equal(dump["rtl"], codes)
    assert main(["report", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out.count("bit-exact: yes") == 2  # simulate, then report


def test_predict_raw_on_a_float_spec_is_a_one_line_error(tmp_path, capsys):
    torch.save(torch.nn.LSTM(2, 3).state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 2)))
    assert main(["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "spec")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "spec"), "--inputs", str(tmp_path / "x.npy"),
                 "--raw", "-o", str(tmp_path / "y.npy")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--raw needs a quantized model" in err[0]


def test_generate_takes_any_lanes_up_to_the_gate_rows(tmp_path, capsys):
    torch.save(torch.nn.LSTM(2, 3).state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "c.npy", np.zeros((2, 3, 2)))
    main(["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "spec")])
    main(["quantize", str(tmp_path / "spec"), "--calib", str(tmp_path / "c.npy"),
          "-o", str(tmp_path / "q")])  # fmt: skip
    capsys.readouterr()
    # 5 lanes do not divide the 12 gate rows: the last row group is padded
    assert main(["generate", str(tmp_path / "q"), "--lanes", "5", "-o", str(tmp_path / "g")]) == 0
    assert files.read_json(tmp_path / "g" / "manifest.json", "manifest")["lanes"] == 5
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "q"), "--lanes", "13", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lanes must be in 1..12 (4*hidden_size), not 13" in err[0]
