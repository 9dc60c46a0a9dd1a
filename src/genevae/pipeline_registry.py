"""Project pipelines: every folder under ``pipelines/`` is found automatically."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the five pipelines, each instantiated per registered dataset.

    ``__default__`` runs data processing and VEGA; ``all`` is every pipeline, the lineage from
    each raw file to the evaluation report (kedro-viz: choose "all").
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in ("data_processing", "vega") if name in pipelines),
        Pipeline([]),
    )
    pipelines["all"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
