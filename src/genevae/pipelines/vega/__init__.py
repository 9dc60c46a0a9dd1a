"""The `vega` pipeline."""

from genevae.pipelines.vega.pipeline import create_pipeline

__all__ = ["create_pipeline"]
