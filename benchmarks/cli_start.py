"""How fast `symtwin --help` and `symtwin validate` start, and that --help loads neither numba nor CasADi.

Baseline, in the same run: a bare `python -c pass` (the interpreter's own start), so the ratio shows what
symtwin adds. Figures are medians over repeated runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def timed(cmd: list[str], n: int = 15) -> float:
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    bare = timed([PY, "-c", "pass"])
    help_s = timed([PY, "-m", "symtwin", "--help"])
    validate_s = timed([PY, "-m", "symtwin", "validate", "configs/kalundborg.yaml"], n=7)
    probe = subprocess.run(
        [PY, "-c", "import sys; import symtwin.cli as c; p, s = c.build_parser(); p.format_help();\n"
         "print(','.join(m for m in ('numba', 'casadi', 'do_mpc', 'asyncua', 'scipy') if m in sys.modules))"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.strip()
    write_result("cli_start", {
        "help_s": help_s,
        "validate_kalundborg_s": validate_s,
        "python_bare_s": bare,
        "help_vs_bare": help_s / bare,
        "heavy_modules_loaded_by_help": probe or "none",
    })


if __name__ == "__main__":
    main()
