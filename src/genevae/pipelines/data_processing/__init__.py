"""The `data_processing` pipeline."""
