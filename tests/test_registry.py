"""The dataset registry: per-dataset parameters, raw catalog entries, the config loader's
layering (conf/local under every env) and the per-dataset pipelines built from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from kedro.io import AbstractDataset

from genevae.config import GenevaeConfigLoader
from genevae.errors import GenevaeInputError
from genevae.pipelines.data_processing.pipeline import create_pipeline as data_processing
from genevae.pipelines.evaluation.pipeline import create_pipeline as evaluation
from genevae.pipelines.vega.pipeline import create_pipeline as vega
from genevae.preprocessing.perturbseq_sources import strong_perturbations
from genevae.registry import Registry, dataset_parameters, deep_merge, raw_catalog_entries
from genevae.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

CELLS = {
    "kind": "scrna",
    "file": "data/01_raw/cells.h5ad",
    "obs": {"condition": "treatment", "cell_type": "cluster", "batch": None},
    "gene_sets": ["hallmark"],
    "comparisons": [{"groupby": "treatment", "group1": 1, "group2": 0}],
    "gsea_comparison": None,
    "vega": {"training": {"batch_size": 64}},
}
SCREEN = {
    "kind": "perturbseq",
    "file": "data/01_raw/screen.h5ad",
    "obs": {"perturbation": "guide", "target_gene": "gene"},
    "control_label": "NT",
}
DEFAULTS = {
    "vega": {
        "training": {"max_epochs": 500, "batch_size": 128},
        "analysis": {"comparisons": [], "cell_type_key": None, "gsea": {"comparison": "x"}},
    },
    "data_processing": {
        "scrna": {"min_genes": 200, "condition_key": None},
        "perturbseq": {"control_label": None, "n_top_genes": 1000},
        "bulk": {"n_genes": 5000},
    },
    "gpo_vae": {"training": {"max_epochs": 2000}},
}


def test_dataset_sections_layer_defaults_registry_entry_and_overrides():
    registry = Registry(datasets={"cells": CELLS, "screen": SCREEN})
    params = deep_merge(DEFAULTS, {"vega": {"training": {"max_epochs": 5}}})  # --params default
    params["vega"]["cells"] = {"training": {"seed": 3}}  # --params vega.cells.training.seed=3
    result = dataset_parameters(params, registry)

    cells = result["vega"]["cells"]
    assert cells["training"] == {"max_epochs": 5, "batch_size": 64, "seed": 3}
    assert cells["analysis"]["cell_type_key"] == "cluster"
    assert cells["analysis"]["color_by"] == ["cluster", "treatment"]
    assert cells["analysis"]["gsea"] == {"comparison": None}  # null: GSEA off
    assert cells["analysis"]["comparisons"] == CELLS["comparisons"]
    assert result["data_processing"]["cells"] == {
        "scrna": {"min_genes": 200, "condition_key": "treatment", "cell_type_key": "cluster",
                  "batch_key": None}
    }  # fmt: skip
    assert result["data_processing"]["screen"]["perturbseq"] == {
        "control_label": "NT",
        "n_top_genes": 1000,
        "perturbation_key": "guide",
        "target_gene_key": "gene",
    }
    assert result["gpo_vae"]["screen"] == {"training": {"max_epochs": 2000}}
    assert "screen" not in result["vega"] and result["datasets"]["cells"] == CELLS
    assert result["vega"]["training"] == {"max_epochs": 5, "batch_size": 128}  # untouched


def test_raw_catalog_entries_name_every_registered_file():
    registry = Registry(
        datasets={
            "cells": CELLS,
            "tumours": {"kind": "bulk", "cohorts": {"BRCA": "b.tsv", "READ": "r.tsv"},
                        "load_args": {"log2_transform": True}, "colors": "c.tsv"},
        },
        gene_sets={"hallmark": {"file": "h.gmt"}},
        grn_references={"chip": {"file": "e.csv", "source_col": "tf", "target_col": "gene"}},
    )  # fmt: skip
    entries = raw_catalog_entries(registry)
    assert {name: spec["filepath"] for name, spec in entries.items()} == {
        "cells.raw": "data/01_raw/cells.h5ad",
        "tumours.raw.BRCA": "b.tsv",
        "tumours.raw.READ": "r.tsv",
        "tumours.colors": "c.tsv",
        "gene_sets.hallmark": "h.gmt",
        "grn_references.chip.regulons": "e.csv",
        "grn_references.chip.edges": "e.csv",
    }
    assert entries["tumours.raw.BRCA"]["load_args"] == {"log2_transform": True}
    assert entries["grn_references.chip.regulons"]["load_args"] == {
        "source_col": "tf",
        "target_col": "gene",
    }
    assert all(spec["metadata"]["kedro-viz"]["layer"] == "01_raw" for spec in entries.values())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"datasets": {"My-Cells": CELLS}}, "lowercase letters"),
        ({"datasets": {"cells": {**CELLS, "kind": "sc"}}}, r"datasets.cells.kind is 'sc'"),
        ({"dataset": {"cells": CELLS}}, "unknown top-level block"),
    ],
)
def test_bad_registry_is_named(config, message):
    with pytest.raises(GenevaeInputError, match=message):
        Registry.from_config(config)


def _write(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))


def test_conf_local_applies_under_another_env_and_adds_datasets(tmp_path):
    _write(tmp_path / "base" / "parameters.yml", {"vega": {"training": {"max_epochs": 500}}})
    _write(tmp_path / "base" / "datasets.yml", {"datasets": {"screen": SCREEN}})
    _write(tmp_path / "base" / "catalog.yml", {})
    _write(tmp_path / "demo" / "parameters.yml", {"vega": {"training": {"max_epochs": 20}}})
    _write(tmp_path / "local" / "parameters.yml", {"vega": {"training": {"seed": 7}}})
    _write(tmp_path / "local" / "datasets.yml", {"datasets": {"cells": CELLS}})
    loader = GenevaeConfigLoader(
        str(tmp_path), env="demo", runtime_params={"vega": {"training": {"seed": 8}}},
        **CONFIG_LOADER_ARGS,
    )  # fmt: skip
    params = loader["parameters"]
    assert params["vega"]["training"] == {"max_epochs": 20, "seed": 8}  # base→demo→local→params
    assert params["vega"]["cells"]["training"] == {"max_epochs": 20, "seed": 8, "batch_size": 64}
    assert set(loader.registry().datasets) == {"screen", "cells"}
    assert loader["catalog"]["cells.raw"]["filepath"] == "data/01_raw/cells.h5ad"


def test_pipelines_are_instantiated_per_dataset_and_lineage_reaches_the_report():
    shipped = GenevaeConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS).registry()
    registry = dataclasses.replace(shipped, datasets={**shipped.datasets, "cells": CELLS})
    processing, model = data_processing(registry), vega(registry)
    assert {n.namespace for n in processing.nodes} >= {"data_processing.kang",
                                                       "data_processing.cells"}  # fmt: skip
    train = next(n for n in model.nodes if n.name == "vega.cells.train_vega")
    assert train.inputs == [
        "cells.processed",
        "vega.cells.gene_module_mask",
        "params:vega.cells",
    ]
    assert "cells.gene_module_mask.hallmark" in processing.all_outputs()
    report = evaluation(registry)
    # The evaluation reads the model file that vega saves (one dataset, transcoded).
    assert "vega.kang.model@optional" in report.inputs()
    assert "vega.kang.model@saved" in model.all_outputs()
    combined = model + report
    assert combined.only_nodes_with_inputs("vega.kang.model").nodes


def test_a_screens_summary_statistics_become_a_catalog_entry_and_the_filters_input(tmp_path):
    table = tmp_path / "summary.tsv"
    table.write_text(
        "genetic perturbation\tNumber of DEGs (anderson-darling)\tpercent knockdown\t"
        "number of cells (filtered)\n1_SPI1_P1\t80\t-0.7\t150\n2_EP300_P1\t3\t-0.7\t150\n"
    )
    screens = {
        "screen": SCREEN | {"summary_stats": {"file": str(table)}},
        "k562": SCREEN | {"summary_stats": {"file": "s2.xlsx", "sheet": "TabB"}},
        "plain": SCREEN,
    }
    entries = raw_catalog_entries(Registry(datasets=screens))
    assert entries["k562.summary_stats"]["type"] == "pandas.ExcelDataset"
    assert entries["k562.summary_stats"]["load_args"] == {"sheet_name": "TabB"}
    assert "plain.summary_stats" not in entries
    loaded = AbstractDataset.from_config("screen.summary_stats", entries["screen.summary_stats"])
    assert strong_perturbations(loaded.load()) == ["SPI1"]  # the authors' thresholds
    nodes = {n.name: n for n in data_processing(Registry(datasets=screens)).nodes}
    assert nodes["data_processing.screen.preprocess"].inputs == [
        "screen.raw",
        "params:data_processing.screen.perturbseq",
        "screen.summary_stats",
    ]
    assert "plain.summary_stats" not in nodes["data_processing.plain.preprocess"].inputs
