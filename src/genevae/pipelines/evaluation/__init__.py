"""The `evaluation` pipeline."""
