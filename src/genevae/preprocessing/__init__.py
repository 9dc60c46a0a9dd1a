"""genevae.preprocessing."""
