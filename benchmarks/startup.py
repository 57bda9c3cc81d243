"""Wall time of `medad --help` and `medad methods` against `python -c "import torch"`.

    python benchmarks/startup.py [--repeat 5]

Each command runs `repeat` times in a fresh interpreter (the same Python as this script, medad
from the same path); the best time of each is printed with its ratio to importing torch, which
every command that touches a method must pay anyway. Target: each ratio at most 1.5 (issue 16).
The CPU time of the child (user + system) is printed too: on a shared, loaded machine it is the
steadier measure.
No timings are stored anywhere; they depend on the machine and are only printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

COMMANDS = {
    'python -c "import torch"': ["-c", "import torch"],
    "medad --help": ["-m", "medad", "--help"],
    "medad methods": ["-m", "medad", "methods"],
}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_time(args: list[str], repeat: int) -> tuple[float, float]:
    """(best wall time, best CPU time) of `repeat` runs, in seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _child_cpu()
        subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - start)
        cpus.append(_child_cpu() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (best counts)")
    args = parser.parse_args()
    times = {name: best_time(argv, args.repeat) for name, argv in COMMANDS.items()}
    wall0, cpu0 = times['python -c "import torch"']
    print(f"{'command':<28}{'wall (s)':>10}{'ratio':>8}{'CPU (s)':>10}{'ratio':>8}")
    for name, (wall, cpu) in times.items():
        print(f"{name:<28}{wall:>10.2f}{wall / wall0:>7.2f}x{cpu:>10.2f}{cpu / cpu0:>7.2f}x")


if __name__ == "__main__":
    main()
