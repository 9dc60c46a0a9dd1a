"""Speed and memory benchmarks of genevae, side by side with a matmul floor and with peers.

Run everything with ``make bench`` (``python -m benchmarks.run_all``); one benchmark with
``python -m benchmarks.run_all --only bayes_factors``. Results land in
``benchmarks/results/<name>.json``; ``docs/performance.md`` explains them.

The machine is shared, so every speed figure is a ratio of two timings taken in the same
process, one right after the other. On an oversubscribed machine libgomp's busy-waiting
threads make small matrix products many times slower (they spin while the core they wait
for is running someone else); unless the caller chose otherwise, the benchmarks therefore
ask OpenMP to sleep instead of spin. This must happen before torch is first imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
