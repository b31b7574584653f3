"""Denoising and super-resolution: the nets, tiled inference, the never-worse guard, self-fitting, degradations."""
