"""The training corpus (MP-20 as token sequences), the training loop and the bundled reference data's build."""
