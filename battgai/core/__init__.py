"""What every task shares: data paths, device, model registry, provenance, the run store and the job queue."""
