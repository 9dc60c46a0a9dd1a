"""genevae.plotting."""
