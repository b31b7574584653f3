"""Microstructure enhancement and synthesis: UI-free backend of the microstructure page.

By stage:

- :mod:`~battgai.microstructure.io`: samples, demo images, intensity scaling, label rendering,
  the train / test split of the shared data.
- :mod:`~battgai.microstructure.enhancement`: residual CNNs for denoising and x2 / x4
  super-resolution (``model``), seamless tiled inference (``enhance``), the never-worse choice
  between them and classical methods (``guard``), fitting to a user's own image (``selffit``),
  synthetic degradations (``degrade``) and how an enhancer is scored (``evaluate``).
- :mod:`~battgai.microstructure.analysis`: multi-Otsu segmentation and per-phase metrics.
- :mod:`~battgai.microstructure.generation`: synthetic 3D microstructures conditioned on porosity
  (fitted level-cut ``generator``, jointly fitted by ``genfit``), a small ``slicegan`` and 2D / 3D
  ``fusion``.
- :mod:`~battgai.microstructure.pipeline`: one call per page task; :mod:`~battgai.microstructure.train`:
  ``python -m battgai train microstructure``. The benchmarks are :mod:`battgai.bench.microstructure`.
"""
