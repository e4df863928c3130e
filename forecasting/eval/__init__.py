"""Evaluation of ensemble forecasts against a truth store.

- :mod:`.metrics`: CRPS (the loss's kernel), ensemble-mean RMSE, spread-skill ratio, ACC, rank histograms, with
  area weights;
- :mod:`.spectra`: angular power spectra (scalars, and winds as spheroidal/toroidal parts);
- :mod:`.score`: ``sciml forecast score`` — every metric per channel and lead, with baselines, into ``SCORES.nc``;
- :mod:`.plots`, :mod:`.plot_data`: skill curves, rank histograms, spectra and maps; a dataset's maps and spectra;
- :mod:`.expectations`: the demos' acceptance criteria and their PASS/FAIL report.
"""
