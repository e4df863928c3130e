"""WB2 metrics and spectra: hand-computed values, scoringrules, Parseval, analytic spectra, calibration checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scoringrules as sr
import torch
import torch_harmonics as th
import xarray as xr

from sciml.errors import UsageError
from sciml.forecasting.eval import metrics as M
from sciml.forecasting.eval.spectra import EARTH_RADIUS_M
from sciml.forecasting.sphere import latitudes_deg, longitudes_deg, quadrature_weights


def _grid_da(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, extra: dict | None = None) -> xr.DataArray:
    extra = extra or {}
    dims = [*extra, "lat", "lon"]
    coords = {**{k: np.arange(v) for k, v in extra.items()}, "lat": lat, "lon": lon}
    return xr.DataArray(values, dims=dims, coords=coords)


def test_latitude_weights_hand_computed() -> None:
    w = M.latitude_weights(np.array([90.0, 0.0, -90.0]))
    s = math.sin(math.radians(45))
    raw = np.array([1 - s, 2 * s, 1 - s])
    np.testing.assert_allclose(w.values, raw / raw.mean(), rtol=1e-14)
    # order does not matter, and the weights approach cos(lat) on a fine grid
    lat = latitudes_deg(181).numpy()
    w = M.latitude_weights(lat).values
    np.testing.assert_allclose(w[1:-1] / w[90], np.cos(np.deg2rad(lat[1:-1])), atol=2e-4)
    np.testing.assert_allclose(M.latitude_weights(lat[::-1]).values, w[::-1], rtol=1e-14)


def test_rmse_and_ensemble_mean_rmse_hand_computed() -> None:
    lat, lon = np.array([60.0, 0.0, -60.0]), np.array([0.0, 90.0, 180.0, 270.0])
    err_row = np.array([1.0, 2.0, 3.0])
    truth = _grid_da(np.zeros((3, 4)), lat, lon)
    fc = _grid_da(np.repeat(err_row[:, None], 4, axis=1), lat, lon)
    b = np.array([-90, -30, 30, 90.0])
    w = np.diff(np.sin(np.deg2rad(b)))[::-1]  # rows north to south
    expected = math.sqrt((w * err_row**2).sum() / w.sum())
    assert float(M.rmse(fc, truth)) == pytest.approx(expected, rel=1e-12)
    ens = xr.concat([fc, fc + 2.0, fc - 2.0], dim="realization")
    assert float(M.ensemble_mean_rmse(ens, truth)) == pytest.approx(expected, rel=1e-12)
    # mean over time before the root (WB2): errors 1 and 3 everywhere -> sqrt((1 + 9) / 2)
    two = _grid_da(np.stack([np.ones((3, 4)), 3 * np.ones((3, 4))]), lat, lon, {"time": 2})
    assert float(M.rmse(two, xr.zeros_like(two), mean_dims=["time"])) == pytest.approx(math.sqrt(5), rel=1e-12)


def test_acc_hand_computed() -> None:
    lat, lon = np.array([45.0, -45.0]), np.array([0.0, 180.0])
    clim = _grid_da(np.full((2, 2), 10.0), lat, lon)
    anom = _grid_da(np.array([[1.0, -1.0], [2.0, 0.5]]), lat, lon)
    assert float(M.acc(clim + 3 * anom, clim + anom, clim)) == pytest.approx(1.0, abs=1e-12)
    assert float(M.acc(clim - anom, clim + anom, clim)) == pytest.approx(-1.0, abs=1e-12)
    # equal weights here (symmetric rows): f' = (1, 0, 0, 1), o' = (1, 1, 0, 0) -> 1 / (sqrt 2 sqrt 2) = 0.5
    f = clim + _grid_da(np.array([[1.0, 0.0], [0.0, 1.0]]), lat, lon)
    o = clim + _grid_da(np.array([[1.0, 1.0], [0.0, 0.0]]), lat, lon)
    assert float(M.acc(f, o, clim)) == pytest.approx(0.5, abs=1e-12)


def test_crps_is_area_weighted_fair_crps() -> None:
    rng = np.random.default_rng(0)
    lat, lon = latitudes_deg(9).numpy(), longitudes_deg(16).numpy()
    fc = xr.DataArray(rng.normal(size=(5, 2, 9, 16)), dims=["realization", "time", "lat", "lon"])
    fc = fc.assign_coords(lat=lat, lon=lon)
    truth = fc.isel(realization=0, drop=True) * 0 + rng.normal(size=(2, 9, 16))
    ours = M.crps(fc, truth)
    pointwise = sr.crps_ensemble(truth.values, fc.values, m_axis=0, estimator="fair")
    w = M.latitude_weights(lat).values[:, None]
    expected = (pointwise * w).sum(axis=(-2, -1)) / (w.sum() * 16)
    np.testing.assert_allclose(ours.values, expected, rtol=1e-12)
    with pytest.raises(UsageError, match="at least 2 members"):
        M.crps(fc.isel(realization=[0]), truth)


def _iid_ensemble(m: int, t: int, seed: int) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    lat, lon = latitudes_deg(9).numpy(), longitudes_deg(16).numpy()
    mu = rng.normal(size=(t, 1, 1)) * 3  # a different "weather" per case, shared by truth and members
    data = mu[None] + rng.normal(size=(m + 1, t, 9, 16))
    da = xr.DataArray(data, dims=["realization", "time", "lat", "lon"], coords={"lat": lat, "lon": lon})
    return da.isel(realization=slice(1, None)), da.isel(realization=0, drop=True)


def test_spread_skill_ratio_is_one_for_a_perfect_ensemble() -> None:
    m, t = 4, 400
    fc, truth = _iid_ensemble(m, t, seed=1)
    ssr = float(M.spread_skill_ratio(fc, truth, mean_dims=["time"], finite_ensemble_correction=True))
    raw = float(M.spread_skill_ratio(fc, truth, mean_dims=["time"]))
    # 57,600 independent points: the sampling sd of the ratio is ~0.3 %, 1.5 % is 5 sd
    assert ssr == pytest.approx(1.0, abs=0.015)
    assert raw == pytest.approx(math.sqrt(m / (m + 1)), abs=0.015)
    # under-dispersed ensemble (members shrunk towards their mean) is detected
    shrunk = fc.mean("realization") + 0.5 * (fc - fc.mean("realization"))
    assert float(M.spread_skill_ratio(shrunk, truth, mean_dims=["time"], finite_ensemble_correction=True)) < 0.7


@pytest.mark.parametrize("discrete", [False, True])
def test_rank_histogram_flat_within_sampling_error(discrete: bool) -> None:
    m, t = 5, 300
    fc, truth = _iid_ensemble(m, t, seed=2)
    if discrete:  # many ties: random tie-breaking must keep it flat
        fc, truth = np.round(fc), np.round(truth)
    hist = M.rank_histogram(fc, truth, seed=3)
    counts = hist.values
    n = counts.sum()
    assert n == t * 9 * 16 and counts.shape == (m + 1,)
    # given the case mean, truth and members are i.i.d. at every point, so ranks are independent and uniform:
    # multinomial bins with relative sd sqrt(M / n)
    rel = counts / (n / (m + 1)) - 1
    assert np.abs(rel).max() < 5 * math.sqrt(m / n)
    # a biased ensemble piles up in the last bin
    biased = M.rank_histogram(fc - 3.0, truth).values
    assert biased[-1] > 0.5 * biased.sum()


def _bandlimited(nlat: int, nlon: int, lmax: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.tril(torch.randn(lmax, lmax, generator=g, dtype=torch.float64)) + 1j * torch.tril(
        torch.randn(lmax, lmax, generator=g, dtype=torch.float64)
    )
    isht = th.InverseRealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho").double()
    return isht(c)


def _field_da(f: torch.Tensor) -> xr.DataArray:
    nlat, nlon = f.shape[-2:]
    return xr.DataArray(
        f.numpy(), dims=["lat", "lon"], coords={"lat": latitudes_deg(nlat).numpy(), "lon": longitudes_deg(nlon).numpy()}
    )


def test_angular_power_spectrum_parseval_and_unit_field() -> None:
    nlat, nlon = 33, 64
    f = _bandlimited(nlat, nlon, 17, seed=0)
    p = M.angular_power_spectrum(_field_da(f))
    integral = float((f**2 * quadrature_weights(nlat, nlon, normalize=False)).sum())
    assert float(p.sum()) == pytest.approx(integral, rel=1e-9)
    ones = _field_da(torch.ones(nlat, nlon, dtype=torch.float64))
    q = quadrature_weights(nlat, nlon, normalize=False)
    assert float(q.sum() * nlon) == pytest.approx(4 * math.pi, rel=1e-12)
    p1 = M.angular_power_spectrum(ones)
    assert float(p1.sel(l=0)) == pytest.approx(4 * math.pi, rel=1e-12)  # integral of 1^2 over the sphere
    assert float(abs(p1.isel(l=slice(1, None))).max()) < 1e-12
    # ascending latitudes are flipped, not misread
    flipped = _field_da(f).isel(lat=slice(None, None, -1))
    np.testing.assert_allclose(M.angular_power_spectrum(flipped).values, p.values, rtol=1e-12)
    with pytest.raises(UsageError, match="not a equiangular grid"):
        M.angular_power_spectrum(_field_da(f).assign_coords(lat=np.linspace(80, -80, nlat)))


def test_angular_power_spectrum_of_gaussian_random_field_matches_analytic_shape() -> None:
    r"""E P(l) = (2l+1) C_l for coefficients with variance C_l; C_l = (1 + l(l+1)/25)^-2 here."""
    nlat, nlon, lmax, n = 33, 64, 17, 200
    l = torch.arange(lmax, dtype=torch.float64)
    C = (1 + l * (l + 1) / 25.0) ** -2.0
    g = torch.Generator().manual_seed(4)
    z = torch.complex(
        torch.randn(n, lmax, lmax, generator=g, dtype=torch.float64),
        torch.randn(n, lmax, lmax, generator=g, dtype=torch.float64),
    ) / math.sqrt(2)
    z[..., 0] = math.sqrt(2) * z[..., 0].real  # real m = 0 coefficients of a real field
    coeffs = torch.tril(torch.ones(lmax, lmax)) * z * C.sqrt()[:, None]
    isht = th.InverseRealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho").double()
    fields = xr.DataArray(
        isht(coeffs).numpy(),
        dims=["sample", "lat", "lon"],
        coords={"lat": latitudes_deg(nlat).numpy(), "lon": longitudes_deg(nlon).numpy()},
    )
    ratio = M.angular_power_spectrum(fields).mean("sample").values / ((2 * l + 1) * C).numpy()
    # P(l)/((2l+1)C_l) averages chi^2 variables: relative sd sqrt(2 / ((2l+1) n)) (m=0 adds a little)
    sd = np.sqrt(2.0 / ((2 * l.numpy() + 1) * n))
    assert np.all(np.abs(ratio - 1) < 5 * sd), (ratio, sd)


def test_zonal_energy_spectrum_single_wave_and_parseval() -> None:
    nlat, nlon, k0, amp = 9, 16, 3, 2.0
    lat, lon = latitudes_deg(nlat).numpy(), longitudes_deg(nlon).numpy()
    wave = amp * np.cos(2 * np.pi * k0 * np.arange(nlon) / nlon)
    f = xr.DataArray(np.tile(wave, (nlat, 1)), dims=["lat", "lon"], coords={"lat": lat, "lon": lon})
    s = M.zonal_energy_spectrum(f)
    circ = 2 * np.pi * EARTH_RADIUS_M * np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(s.sel(zonal_wavenumber=k0).values, circ * amp**2 / 2, rtol=1e-12, atol=1e-6)
    others = s.drop_sel(zonal_wavenumber=k0).values
    assert np.abs(others).max() < 1e-9 * circ.max()
    np.testing.assert_allclose(s.wavelength.sel(zonal_wavenumber=k0).values, circ / k0, rtol=1e-12)
    rng = np.random.default_rng(0)
    g = xr.DataArray(rng.normal(size=(nlat, nlon)), dims=["lat", "lon"], coords={"lat": lat, "lon": lon})
    total = M.zonal_energy_spectrum(g).sum("zonal_wavenumber").values
    np.testing.assert_allclose(total, (g.values**2).mean(axis=-1) * circ, rtol=1e-12, atol=1e-6)


def test_bad_metric_input() -> None:
    lat, lon = np.array([45.0, -45.0]), np.array([0.0, 180.0])
    da = _grid_da(np.zeros((2, 2)), lat, lon)
    with pytest.raises(UsageError, match="realization"):
        M.spread(da)
    with pytest.raises(UsageError, match="lacks dimension"):
        M.rmse(da.rename(lat="latitude"), da.rename(lat="latitude"))
    with pytest.raises(UsageError, match="within"):
        M.latitude_weights(np.array([100.0, 0.0]))


def test_datasets_are_scored_variable_by_variable() -> None:
    fc, truth = _iid_ensemble(3, 4, seed=5)
    ds_fc = xr.Dataset({"z500": fc, "t850": 2 * fc})
    ds_truth = xr.Dataset({"z500": truth, "t850": 2 * truth})
    for metric in (M.crps, M.spread_skill_ratio, M.ensemble_mean_rmse):
        out = metric(ds_fc, ds_truth)
        assert isinstance(out, xr.Dataset)
        xr.testing.assert_allclose(out["z500"], metric(fc, truth))
    # CRPS and RMSE scale with the field, the SSR does not
    xr.testing.assert_allclose(M.crps(ds_fc, ds_truth)["t850"], 2 * M.crps(fc, truth))
    xr.testing.assert_allclose(M.spread_skill_ratio(ds_fc, ds_truth)["t850"], M.spread_skill_ratio(fc, truth))
    spec = M.angular_power_spectrum(ds_truth.isel(time=0))
    xr.testing.assert_allclose(spec["t850"], 4 * spec["z500"])


def test_vector_power_closed_form_flows_and_parseval() -> None:
    r"""Unit-speed flows with one Helmholtz mode each carry :math:`\int |\mathbf u|^2 d\Omega = 8\pi/3` there alone.

    Solid-body rotation about the axis (:math:`u = \cos\varphi`): toroidal l = 1, m = 0; the gradient of
    :math:`\sin\varphi` (:math:`v = \cos\varphi`): spheroidal l = 1, m = 0; rotation about an equatorial axis
    (:math:`u = -\sin\varphi\cos\lambda,\ v = \sin\lambda`): toroidal l = 1, m = 1, whose phase turns with the
    axis. A random band-limited field's energies sum to its quadrature integral (Parseval).
    """
    from sciml.forecasting.eval.spectra import vector_coefficients, vector_power_tensor

    nlat, nlon = 33, 64
    lat = torch.deg2rad(latitudes_deg(nlat))[:, None].expand(nlat, nlon)
    lon = torch.deg2rad(longitudes_deg(nlon))[None, :].expand(nlat, nlon)
    zero = torch.zeros(nlat, nlon, dtype=torch.float64)
    flows = {
        (1, 1, 0): (torch.cos(lat), zero),
        (0, 1, 0): (zero, torch.cos(lat)),
        (1, 1, 1): (-torch.sin(lat) * torch.cos(lon), torch.sin(lon)),
    }
    for (part, l, m), (u, v) in flows.items():
        e = vector_power_tensor(u, v)
        assert e.shape == (2, 17, 17)
        assert float(e[part, l, m]) == pytest.approx(8 * math.pi / 3, rel=1e-10)
        e[part, l, m] = 0.0
        assert float(e.abs().max()) < 1e-10
    # the rotation about the axis at longitude alpha is the alpha = 0 flow shifted east: T_11 turns by exp(-i alpha)
    alpha = math.radians(90.0)
    t11 = [vector_coefficients(-torch.sin(lat) * torch.cos(lon - a), torch.sin(lon - a))[1, 1, 1] for a in (0, alpha)]
    assert abs(t11[0]) == pytest.approx(math.sqrt(2 * math.pi / 3), rel=1e-10)  # 8 pi / 3 = 2 l(l+1) |T_11|^2
    assert abs(t11[1] / t11[0] - complex(math.cos(alpha), -math.sin(alpha))) < 1e-10
    lmax = 9  # |u|^2 is then a polynomial of degree <= 16 in cos(colat), integrated exactly on 33 equiangular rows
    g = torch.Generator().manual_seed(2)
    coeffs = torch.complex(*(torch.randn(2, 2, lmax, lmax, generator=g, dtype=torch.float64) for _ in range(2)))
    coeffs = coeffs * torch.tril(torch.ones(lmax, lmax))
    coeffs[..., 0] = coeffs[..., 0].real
    ivsht = th.InverseRealVectorSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho").double()
    utheta, uphi = ivsht(coeffs)[0]
    u, v = uphi, -utheta
    integral = float(((u**2 + v**2) * quadrature_weights(nlat, nlon, normalize=False)).sum())
    # rel 1e-6: torch-harmonics' vector transforms round-trip to ~1e-7 (its scalar ones to ~1e-12)
    assert float(vector_power_tensor(u[None], v[None]).sum()) == pytest.approx(integral, rel=1e-6)
    with pytest.raises(UsageError, match="same shape"):
        vector_power_tensor(u, v[:-1])


def test_one_band_rule_and_wind_convention_for_loss_and_spectra():
    """Loss and diagnostics share the band rule (vector transforms need l = 1) and the (u, v) -> (-v, u) input."""
    from sciml.forecasting.eval.spectra import vector_coefficients
    from sciml.forecasting.losses import mode_amplitudes
    from sciml.forecasting.sphere import band_limit, tangent_components

    assert band_limit(17, 32) == 9 and band_limit(16, 32, "legendre-gauss") == 16
    assert band_limit(9, 16, lmax=1) == 1
    with pytest.raises(UsageError, match=r"lmax=1 must be in \[2, nlon/2=8\]"):
        band_limit(9, 16, lmax=1, vector=True)
    with pytest.raises(UsageError, match="nlon/2=8"):
        band_limit(9, 16, lmax=9)
    u, v = torch.randn(2, 17, 32, dtype=torch.float64).unbind(0)
    assert torch.equal(tangent_components(u, v), torch.stack([-v, u]))
    # the loss's typical amplitudes of a wind pair are the magnitudes of the diagnostics' S and T coefficients
    amp = mode_amplitudes(torch.stack([u, v])[None], vector_pairs=[(0, 1)])
    coeffs = vector_coefficients(u, v)
    assert torch.allclose(amp, coeffs.abs() * torch.tril(torch.ones(9, 9, dtype=torch.float64)), atol=1e-12)
