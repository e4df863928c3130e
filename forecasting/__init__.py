"""Probabilistic global forecasting on the sphere: an FCN3-style ensemble trained with the CRPS.

Package map (read top-down; ``docs/forecasting.md`` has the details):

- :mod:`~sciml.forecasting.data` — the canonical store (``time, lat, lon``), readers for ERA5 layouts, the built-in
  shallow-water dataset, statistics, training samples read on a tile;
- :mod:`~sciml.forecasting.sphere`, :mod:`~sciml.forecasting.tiles` — grids, quadrature, the SHT convention for
  scalars and winds; latitude x longitude tiles and the split rule;
- :mod:`~sciml.forecasting.models` — the network (DISCO encoder/decoder, spherical and local blocks, noise input);
- :mod:`~sciml.forecasting.noise` — AR(1) diffusion noise on the sphere, one stream per member;
- :mod:`~sciml.forecasting.losses` — ensemble CRPS kernels, grid and spectral CRPS, rollouts;
- :mod:`~sciml.forecasting.train` — config, curriculum trainer, checkpoints;
- :mod:`~sciml.forecasting.infer` — ensemble rollouts written in the WeatherBench 2 layout;
- :mod:`~sciml.forecasting.eval` — metrics, spectra, scoring with baselines, plots, the demos' acceptance criteria;
- :mod:`~sciml.forecasting.distributed` — the same model, loss, noise and loops on tiles and ranks;
- :mod:`~sciml.forecasting.cli` — the ``sciml data|forecast|plot`` commands (argparse glue only);
  :mod:`~sciml.forecasting.slurm` — batch scripts.

Quick start — one CRPS training step of a 4-member ensemble of the ``tiny`` model on random fields:

>>> import torch
>>> from sciml.forecasting.losses import FairCRPS, fcn3_loss
>>> from sciml.forecasting.models import FCN3, ensemble_step, preset
>>> from sciml.forecasting.noise import DiffusionNoiseS2, EnsembleNoise, heat_kernel_kT
>>> cfg = preset("tiny")                                      # 33 x 64 grid, 6 channels
>>> model, loss_fn = FCN3(cfg), fcn3_loss(cfg.nlat, cfg.nlon, FairCRPS())
>>> process = DiffusionNoiseS2(cfg.nlat, cfg.nlon, [heat_kernel_kT(800.0)] * cfg.n_noise)  # 800 km noise
>>> noise = EnsembleNoise(process, members=4, seed=0)
>>> x = torch.randn(1, cfg.n_channels, cfg.nlat, cfg.nlon)    # [batch, channels, lat, lon]
>>> aux = torch.randn(1, cfg.n_aux, cfg.nlat, cfg.nlon)
>>> forecast = ensemble_step(model, x.expand(4, -1, -1, -1, -1), aux, noise.to_grid(noise.initial(1)))
>>> loss = loss_fn(forecast, torch.randn_like(x))            # forecast [members, batch, C, lat, lon]
>>> loss.backward(); bool(torch.isfinite(loss))
True
"""
