"""The `gpo_vae` pipeline."""
