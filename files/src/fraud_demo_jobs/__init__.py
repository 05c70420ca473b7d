"""fraud-demo jobs: small command-line programs run on the node, one per pipeline stage."""

import os

__version__ = "0.2.0"

# OpenMP threads that spin while they wait make LightGBM ~4x slower per round on a busy 2-core node (measured:
# 1.07 s vs 0.26 s per round, 80k x 400, 2 threads, load 6). libgomp reads this once, when it is first loaded:
# here, before any module of the package imports lightgbm (or anything else that loads OpenMP).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
