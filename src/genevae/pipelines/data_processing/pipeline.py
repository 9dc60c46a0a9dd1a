"""Wiring of the `data_processing` pipeline (placeholder until its nodes land)."""

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([])
