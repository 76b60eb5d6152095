"""Start-up cost of the .pth hook for Python processes that never import lm-eval.

The hook's whole cost is importing finemed_eval._autoload (the .pth line). We read it from
`python -X importtime -c pass` over many runs and compare it with the interpreter's total start-up
(`python -c pass`), both measured in this run. Target: under 50 ms added.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 30


def _startup_ms() -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _hook_ms() -> float:
    samples = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True)
        hook = [line for line in done.stderr.splitlines() if line.rstrip().endswith("finemed_eval._autoload")]
        if not hook:
            sys.exit("finemed_eval._autoload was not imported at start-up: is the package installed?")
        samples.append(int(hook[0].split("|")[1]) / 1000)  # cumulative microseconds
    return statistics.median(samples)


if __name__ == "__main__":
    startup, hook = _startup_ms(), _hook_ms()
    print(f"python -c pass (median of {RUNS}): {startup:.1f} ms")
    print(f"finemed_eval._autoload import (median of {RUNS}): {hook:.2f} ms = {hook / startup:.1%} of start-up; target < 50 ms")
