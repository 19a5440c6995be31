"""Subcommands of ``lstmfpga``: one module per command, see :mod:`lstmfpga.cli`."""
