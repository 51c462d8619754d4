"""Run every benchmark in bench/ (`make bench`), or those named: python -m bench NAME…"""

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    chosen = [n for n in names if not argv or any(a in n for a in argv)]
    if not chosen:
        print("No benchmark matches." if argv else "No benchmarks yet.")
        return 0
    failures = 0
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        ok = module.main()
        failures += ok is False
        print(
            f"--- {name}: {'target met' if ok else 'TARGET MISSED'} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
