"""Discharge-curve and per-cycle trajectory generators: the cVAE, the diffusion model, and one API over both."""
