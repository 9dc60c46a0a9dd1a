"""The `tybalt` pipeline."""

from genevae.pipelines.tybalt.pipeline import create_pipeline

__all__ = ["create_pipeline"]
