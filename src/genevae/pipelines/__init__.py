"""genevae.pipelines."""
