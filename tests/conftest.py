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


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """The built-in ``tiny`` shallow-water store (33 x 64) with its statistics, built once per test module."""
    from sciml.forecasting.data import PRESETS, compute_stats, simulate, source_from_dataset, stats_path, write_store

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    ds, _ = simulate(PRESETS["tiny"])
    src = source_from_dataset(ds, path=path)
    write_store(src, path)
    compute_stats(src).save(stats_path(path))
    return path
