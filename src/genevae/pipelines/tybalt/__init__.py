"""The `tybalt` pipeline."""
