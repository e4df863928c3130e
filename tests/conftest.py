"""Test-wide settings: DeepXDE's backend is chosen before anything can import it, one torch thread.

On the 2-core CI machine two threads per process made parallel work 10-17x slower, and DeepXDE otherwise
writes ~/.deepxde/config.json on first import.
"""

import os

os.environ.setdefault("DDE_BACKEND", "pytorch")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # torch-harmonics compiles SpectralConvS2 otherwise (~1 s)

import torch  # noqa: E402

torch.set_num_threads(1)
