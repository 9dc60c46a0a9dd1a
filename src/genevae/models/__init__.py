"""genevae.models."""
