"""Microstructure enhancement and synthesis: UI-free backend of the microstructure page.

Modules, one concern each:

- :mod:`~battgai.microstructure.io`: samples, demo images, intensity scaling, label rendering,
  the train / test split of the shared data.
- :mod:`~battgai.microstructure.degrade`: synthetic degradations (blur + downsampling, noise,
  CT ring / streak artefacts, SEM scan lines) used to make training pairs.
- :mod:`~battgai.microstructure.model`, :mod:`~battgai.microstructure.train`,
  :mod:`~battgai.microstructure.enhance`: residual CNNs for denoising and x2 / x4
  super-resolution, their training loop and seamless tiled inference.
- :mod:`~battgai.microstructure.segment`, :mod:`~battgai.microstructure.metrics`: multi-Otsu
  segmentation and per-phase metrics.
- :mod:`~battgai.microstructure.generator`: synthetic 3D microstructures conditioned on porosity
  (fitted level-cut model), fitted to every statistic at once by
  :mod:`~battgai.microstructure.genfit`; :mod:`~battgai.microstructure.slicegan`: the same task with a
  small SliceGAN.
- :mod:`~battgai.microstructure.bench`: ``python -m battgai.bench microstructure``.
"""
