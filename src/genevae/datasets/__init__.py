"""genevae.datasets."""
