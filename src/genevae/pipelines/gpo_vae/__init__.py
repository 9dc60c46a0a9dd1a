"""The `gpo_vae` pipeline."""

from genevae.pipelines.gpo_vae.pipeline import create_pipeline

__all__ = ["create_pipeline"]
