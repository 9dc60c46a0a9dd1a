"""data_processing end to end on the real files in ../shared/data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from tests.project import latest_version as _latest


def test_data_processing_writes_every_artifact(processed_project):
    data = processed_project / "data"

    kang = ad.read_h5ad(_latest(data / "03_primary" / "kang" / "processed.h5ad"))
    assert kang.n_obs > 1900 and {"condition", "cell_type"} <= set(kang.obs.columns)
    counts = kang.layers["counts"]
    assert np.array_equal(counts.data, np.round(counts.data))
    np.testing.assert_allclose(np.expm1(kang.X[:5].toarray()).sum(axis=1), 1e4, rtol=1e-3)

    for collection in ("reactome", "hallmark"):
        mask = pd.read_parquet(
            _latest(data / "04_feature" / "kang" / f"gene_module_mask_{collection}.parquet")
        )
        assert list(mask.index) == list(kang.var_names)
        assert mask.columns[-1] == "UNANNOTATED_0" and mask.iloc[:, -1].eq(1).all()
        assert (mask.iloc[:, :-1].sum() >= 5).all()
    reactome = pd.read_parquet(
        _latest(data / "04_feature" / "kang" / "gene_module_mask_reactome.parquet")
    )
    assert "REACTOME_INTERFERON_ALPHA_BETA_SIGNALING" in reactome.columns

    tcga = ad.read_h5ad(_latest(data / "03_primary" / "tcga" / "processed.h5ad"))
    assert tcga.shape == (12, 5000)
    assert set(tcga.obs["cancer_type"]) == {"BRCA", "READ"}
    train = tcga[tcga.obs["split"] == "train"].X
    assert np.isclose(train.min(axis=0), 0).all() and (tcga.X >= 0).all() and (tcga.X <= 1).all()

    adamson = ad.read_h5ad(_latest(data / "03_primary" / "adamson" / "processed.h5ad"))
    assert set(adamson.obs["gene"]) == {
        "SPI1",
        "EP300",
        "SNAI1",
        "ZNF326",
        "BHLHE40",
        "non-targeting",
    }
    assert set(adamson.obs["split"]) == {"train", "validation", "test"}
    de = pd.read_parquet(_latest(data / "04_feature" / "adamson" / "top_de_genes.parquet"))
    assert de.groupby("perturbation").size().eq(20).all()


def test_versioned_outputs_get_a_new_folder_per_run(processed_project, run_pipeline):
    folder = processed_project / "data" / "03_primary" / "tcga" / "processed.h5ad"
    before = {p.name for p in folder.iterdir()}
    run_pipeline("data_processing", namespaces=["data_processing.tcga"])
    after = {p.name for p in folder.iterdir()}
    assert before < after and len(after - before) == 1
