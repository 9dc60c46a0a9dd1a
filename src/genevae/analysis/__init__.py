"""genevae.analysis."""
