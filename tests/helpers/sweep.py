"""How wide the test sweeps run: ``LSTMFPGA_SWEEP=large`` adds the cases CI's time budget
leaves out (wider random sweeps, extra simulator builds, synthesizing smoke runs); the
default, ``small``, is CI's. Cases are chosen at collection, so nothing is skipped."""

import os

#: True when ``LSTMFPGA_SWEEP=large``.
LARGE = os.environ.get("LSTMFPGA_SWEEP") == "large"
