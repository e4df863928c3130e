"""The ``sciml data``, ``sciml forecast`` and ``sciml plot`` commands: argparse glue only, one module per command.

Each module's ``register*`` function is a ``sciml.commands`` entry point (``pyproject.toml``); the command imports
its library module when it runs, so that ``sciml --help`` does not import torch.

- :mod:`.data`: ``sciml data synth | stats | convert | regrid | check | layouts``;
- :mod:`.train`, :mod:`.infer`, :mod:`.score`, :mod:`.demo`, :mod:`.plan`, :mod:`.launch`: ``sciml forecast ...``;
- :mod:`.plot`: ``sciml plot forecast`` and ``sciml plot data``;
- :mod:`.parallel`: the ``--h-parallel/--w-parallel/--ensemble-parallel`` flags and the parallel context;
- :mod:`.common`: ``--set`` parsing and the writing rank's run lock.
"""
