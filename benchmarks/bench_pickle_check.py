"""The TorchScript pickle check's cost against reading the opcodes at all.

``check_pickle`` walks every opcode of a suspect's ``data.pkl`` with a symbolic stack before
torch may load it. This times it on a 3.35 MB pickle (60,000 nested records) against
``pickletools.genops`` alone, the parse it cannot avoid: the ratio is the check's own cost,
comparable across machines.

    python benchmarks/bench_pickle_check.py
"""

from __future__ import annotations

import pickle
import pickletools
import time

from modelprint.suspects.pickle_check import PickleBudget, check_pickle


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    data = pickle.dumps([[str(i), i, (i, i + 1.5), {"k": i}] for i in range(60_000)], protocol=2)
    parse = best_of(lambda: sum(1 for _ in pickletools.genops(data)))
    check = best_of(lambda: check_pickle(data, "bench", lambda module, name: True, PickleBudget()))
    size = f"{len(data) / 1e6:.2f} MB pickle"
    print(f"{size}: genops {parse:.3f} s, check_pickle {check:.3f} s, ratio {check / parse:.2f}")


if __name__ == "__main__":
    main()
