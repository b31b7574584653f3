"""Segmentation and per-phase metrics of 2D images and 3D volumes."""
