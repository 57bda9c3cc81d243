"""Wall time of `medad --help` and `medad methods` against `python -c "import torch"`.

    python benchmarks/startup.py [--repeat 5]

Each command runs `repeat` times in a fresh interpreter (the same Python as this script, medad
from the same path); the best time of each is printed with its ratio to importing torch, which
every command that touches a method must pay anyway. Target: each ratio at most 1.5 (issue 16).
No timings are stored anywhere; they depend on the machine and are only printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

COMMANDS = {
    'python -c "import torch"': ["-c", "import torch"],
    "medad --help": ["-m", "medad", "--help"],
    "medad methods": ["-m", "medad", "methods"],
}


def best_time(args: list[str], repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (best counts)")
    args = parser.parse_args()
    times = {name: best_time(argv, args.repeat) for name, argv in COMMANDS.items()}
    reference = times['python -c "import torch"']
    print(f"{'command':<28}{'best (s)':>10}{'ratio':>8}")
    for name, seconds in times.items():
        print(f"{name:<28}{seconds:>10.2f}{seconds / reference:>7.2f}x")


if __name__ == "__main__":
    main()
