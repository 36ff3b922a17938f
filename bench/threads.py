"""The ``--threads`` option the PyTorch benches share (run them as ``python bench/<name>.py``)."""

from __future__ import annotations

import argparse

import torch

# Two OpenMP threads on a 2-core machine that others share measured up to 15x slower than one (1.8-26 s per training
# epoch against a steady 2.7 s; 150 ms against 1 ms per batch-1 forward): every op waits for a descheduled peer.
THREADS_HELP = "PyTorch threads (1 is steady on a shared machine; raise it on an idle one)"


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)


def use_threads(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
