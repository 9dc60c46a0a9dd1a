"""The `vega` pipeline."""
