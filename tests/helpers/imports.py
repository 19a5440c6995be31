"""What importing a module drags in, seen from a fresh interpreter."""

import subprocess
import sys

HEAVY = ("amaranth", "torch")


def heavy_imports(*modules: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The packages of ``heavy`` that importing ``modules`` (in a new Python process) loads,
    sorted; ``[]`` when it loads none of them."""
    code = (
        f"import sys, {', '.join(modules)}; "
        f"print(' '.join(sorted(m for m in {tuple(heavy)!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()
