"""Project pipelines: every folder under ``pipelines/`` is found automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the five pipelines; ``__default__`` runs data processing and VEGA."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in ("data_processing", "vega") if name in pipelines),
        Pipeline([]),
    )
    return pipelines
