"""Battery health augmentation: one cycling schema, discharge-curve generator, SOH estimators.

Modules, one concern each:

- :mod:`schema`: the cycling schema, loaders (NASA, a researcher's CSV with column mapping and
  unit detection) and small synthetic demo cells.
- :mod:`preprocess`: each discharge curve resampled to a fixed voltage grid, and partial windows.
- :mod:`model` / :mod:`train` / :mod:`sample`: the conditional VAE over resampled curves.
- :mod:`diffusion` / :mod:`diffusion_train` / :mod:`diffusion_sample`: the diffusion curve generator.
- :mod:`generators`: both generators behind one train / load / sample API, the jitter baseline and
  the rule that picks the page's default.
- :mod:`estimator`: SOH from a partial voltage window (ridge, gradient boosting, MLP).
- :mod:`experiment`: the leave-cells-out augmentation experiment and synthetic-data quality scores.
- :mod:`transfer` / :mod:`owncells` / :mod:`transfercli` / :mod:`transferbench`: SOH of a researcher's own
  cells from a few labelled ones (lab-relative frame, Daume ridge), for the page, the CLI and the bench.
"""
