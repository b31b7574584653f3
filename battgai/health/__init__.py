"""Battery health augmentation: one cycling schema, discharge-curve generators, SOH estimators.

By stage:

- :mod:`~battgai.health.schema`: the cycling schema, loaders (NASA, a researcher's CSV with column
  mapping and unit detection) and small synthetic demo cells; :mod:`~battgai.health.preprocess`:
  each discharge curve resampled to a fixed voltage grid, and partial windows.
- :mod:`~battgai.health.generation`: the conditional VAE (``model`` / ``cvae_train`` / ``sample``), the
  diffusion generator (``diffusion`` / ``diffusion_train`` / ``diffusion_sample``), both behind one API
  (``generators``), and per-cycle feature trajectories (``trajectory``).
- :mod:`~battgai.health.estimation`: SOH from a partial voltage window (``estimator``), the
  leave-cells-out augmentation experiment (``experiment``), and SOH of a researcher's own cells
  from a few labelled ones (``transfer``, ``owncells``).
- :mod:`~battgai.health.workflow`: one call per page step; :mod:`~battgai.health.train`:
  ``python -m battgai train health``. The benchmarks are :mod:`battgai.bench.health` and
  :mod:`battgai.bench.health_transfer`; the CLI is :mod:`battgai.cli.health_transfer`.
"""
