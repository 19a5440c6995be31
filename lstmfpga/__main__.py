"""``python -m lstmfpga ...``: the same command line as the ``lstmfpga`` script."""

import sys

from lstmfpga.cli import main

sys.exit(main())
