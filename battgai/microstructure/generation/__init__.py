"""Synthetic microstructures: the level-cut generator and its joint fit, SliceGAN, 2D / 3D fusion."""
