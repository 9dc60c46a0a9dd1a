"""Same seed, same data, CPU: two VEGA runs give bit-identical latents and Bayes factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from genevae.datasets.model_bundle import ModelBundle
from genevae.pipelines.common import expression_data, fit_model
from genevae.pipelines.vega import nodes
from genevae.training import TrainingSettings, train_model
from tests.reliability.tiny import tiny_mask, tiny_modules, tiny_vega

SEED = 7
PARAMS = {
    "model": {"hidden": 16},
    "training": {"max_epochs": 3, "batch_size": 50, "seed": SEED, "progress_bar": False},
    "validation_fraction": 0.2,
}
ANALYSIS = {
    "seed": 0,
    "cell_type_key": "cell_type",
    "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
    "bayes_factor": {"n_samples": 300, "n_pairs": 1000},
}


def _seeded_fit(synthetic, mask) -> ModelBundle:
    """What train_vega does, but with torch seeded before the model's weights are drawn."""
    torch.manual_seed(SEED)
    model = tiny_vega(mask, **PARAMS["model"])
    bundle, _ = fit_model(
        model,
        expression_data(synthetic.adata),
        PARAMS["training"],
        validation_fraction=PARAMS["validation_fraction"],
        gene_names=list(mask.index),
        metadata={"module_names": list(mask.columns), "covariate_keys": []},
    )
    return bundle


def _outputs(bundle: ModelBundle, synthetic) -> tuple[np.ndarray, pd.DataFrame]:
    latent = nodes.encode_module_activities(bundle, synthetic.adata).obsm["X_vega"]
    return latent, nodes.differential_activity_tables(bundle, synthetic.adata, ANALYSIS)


def test_same_seed_gives_bit_identical_latent_and_bayes_factors() -> None:
    synthetic = tiny_modules()
    mask = tiny_mask(synthetic)
    (latent_a, table_a), (latent_b, table_b) = (
        _outputs(_seeded_fit(synthetic, mask), synthetic) for _ in range(2)
    )
    assert latent_a.dtype == np.float32 and np.isfinite(latent_a).all()
    np.testing.assert_array_equal(latent_a, latent_b)
    pd.testing.assert_frame_equal(table_a, table_b, check_exact=True)
    assert set(table_a["module"]) == set(mask.columns)


def test_vega_train_node_is_bit_identical_across_runs() -> None:
    synthetic = tiny_modules()
    mask = tiny_mask(synthetic)
    latents = []
    for process_seed in (11, 12):  # the random state two fresh processes would start from
        torch.manual_seed(process_seed)
        bundle, _, _ = nodes.train_vega(synthetic.adata, mask, PARAMS)
        latents.append(_outputs(bundle, synthetic)[0])
    np.testing.assert_array_equal(latents[0], latents[1])


def test_resumed_training_is_bit_identical_to_uninterrupted_training(tmp_path) -> None:
    synthetic = tiny_modules()
    mask = tiny_mask(synthetic)
    data = expression_data(synthetic.adata)
    settings = {"batch_size": 50, "seed": SEED, "progress_bar": False}
    torch.manual_seed(SEED)
    straight = tiny_vega(mask)
    train_model(
        straight, data, None, TrainingSettings(max_epochs=4, **settings), log_to_mlflow=False
    )

    torch.manual_seed(SEED)
    checkpoint_dir = str(tmp_path)
    first_half = TrainingSettings(max_epochs=2, checkpoint_dir=checkpoint_dir, **settings)
    train_model(tiny_vega(mask), data, None, first_half, log_to_mlflow=False)
    resumed = tiny_vega(mask)
    second_half = TrainingSettings(
        max_epochs=4, checkpoint_dir=checkpoint_dir, resume=True, **settings
    )
    train_model(resumed, data, None, second_half, log_to_mlflow=False)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
