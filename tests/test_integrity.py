"""Nothing lost, nothing silent: store time encoding, run locks, stale temporaries, resume rules, checkpoint
integrity, non-finite data and one-line errors (real processes where the behaviour is about processes)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sciml.forecasting.data.testing import synthetic_truth

from sciml.cli import main

PY = sys.executable


def _sciml(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "sciml.cli", *args], capture_output=True, text=True, timeout=timeout, **kw)


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------- A: store times
def test_store_in_one_step_blocks_round_trips_times_and_values(tmp_path, monkeypatch):
    """A block threshold below one step (as for 0.25 deg x 16 channels) must not re-interpret appended times."""
    from sciml.forecasting.data import store
    from sciml.forecasting.data.readers import open_source

    truth = synthetic_truth(steps=6)
    monkeypatch.setattr(store, "BLOCK_BYTES", 1.0)  # one time step per block
    path = store.write_store(store.source_from_dataset(truth), tmp_path / "s.zarr")
    with open_source(path) as src:
        assert src.times.equals(pd.DatetimeIndex(truth["time"].values))
        for c in truth.data_vars:
            got = (src.parts[0] if c in src.channels else src.static)[c].values
            np.testing.assert_array_equal(got, truth[c].values)
    raw = xr.open_zarr(path, consolidated=False, decode_times=False)["time"]
    assert raw.attrs["units"].startswith("seconds since 1970") and raw.dtype == np.int64
    assert main(["data", "check", str(path)]) == 0


def test_check_refuses_a_store_with_misencoded_times(tmp_path, capsys):
    """A store written the old way (first block 'days since', appended 6-hourly offsets) is reported as corrupt."""
    from sciml.forecasting.data.store import source_from_dataset, write_store

    truth = synthetic_truth(steps=4)
    good = write_store(source_from_dataset(truth), tmp_path / "good.zarr")
    bad = tmp_path / "bad.zarr"
    first = truth.isel(time=slice(0, 1))
    first.attrs.update(xr.open_zarr(good, consolidated=False).attrs)
    first.to_zarr(bad, mode="w", zarr_format=3, consolidated=False)  # xarray picks 'days since' from one time
    for i in range(1, 4):
        block = truth.isel(time=slice(i, i + 1)).drop_vars(["orog", "lsm"])
        block.attrs = first.attrs
        with pytest.warns(UserWarning, match="hours since"):  # the old silent unit switch
            block.to_zarr(bad, append_dim="time", zarr_format=3, consolidated=False)
    capsys.readouterr()
    assert main(["data", "check", str(bad)]) == 2
    assert "the store is corrupt" in _one_line(capsys.readouterr().err)
