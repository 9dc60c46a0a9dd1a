"""Configuration checks (genevae.validation): each bad configuration is named, with its fix.

The parameter schema is derived from the repository's own conf/base defaults, so these tests
also fail when a shipped environment (test, demo) uses a key the base defaults lack.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from genevae.errors import GenevaeConfigError, GenevaeInputError
from genevae.validation import ParameterSchema, parameter_problems, validate_run
from tests.conftest import PROJECT_ROOT


def _parameters(env: str) -> dict[str, Any]:
    """The parameters files of one conf environment, merged by top-level section."""
    merged: dict[str, Any] = {}
    for path in sorted((PROJECT_ROOT / "conf" / env).glob("parameters*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


DEFAULTS = _parameters("base")


def _soft_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: _soft_merge(base.get(k), override.get(k, base.get(k))) for k in base | override}
    return override


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("env", ["base", "test", "demo"])
def test_every_shipped_environment_passes_the_schema(env: str) -> None:
    params = _soft_merge(DEFAULTS, _parameters(env))
    assert parameter_problems(params, DEFAULTS, params) == []


ParamCase = tuple[str, Callable[[dict[str, Any]], None], str]

PARAM_CASES: list[ParamCase] = [
    (
        "typo_in_section",
        lambda p: p["vega"].update(trainng={"max_epochs": 5}),
        "`vega.trainng` is not a known parameter; did you mean `vega.training`?",
    ),
    (
        "typo_in_leaf",
        lambda p: p["vega"]["training"].update(max_epoch=5),
        "`vega.training.max_epoch` is not a known parameter; "
        "did you mean `vega.training.max_epochs`?",
    ),
    (
        "typo_three_levels_down",
        lambda p: p["vega"]["analysis"]["gsea"]["prerank"].update(permutation_nm=5),
        "did you mean `vega.analysis.gsea.prerank.permutation_num`?",
    ),
    (
        "typo_in_a_list_of_comparisons",
        lambda p: p["vega"]["analysis"].update(
            comparisons=[{"groupby": "condition", "group1": "stimulated", "grup2": "control"}]
        ),
        "`vega.analysis.comparisons[0].grup2` is not a known parameter; "
        "did you mean `vega.analysis.comparisons[0].group2`?",
    ),
    (
        "comparison_without_groupby",
        lambda p: p["vega"]["analysis"].update(comparisons=[{"group1": "stimulated"}]),
        "`vega.analysis.comparisons[0].groupby` is missing",
    ),
    (
        "model_override_not_a_model_key",
        lambda p: p["gpo_vae"]["no_grn"]["variant"]["model_overrides"].update(grn_alignmnt=False),
        "did you mean `gpo_vae.no_grn.variant.model_overrides.grn_alignment`?",
    ),
    (
        "sweep_grid_key_not_a_training_key",
        lambda p: p["tybalt"]["sweep"]["grid"]["training"].update(lerning_rate=[1e-3]),
        "did you mean `tybalt.sweep.grid.training.learning_rate`?",
    ),
    (
        "arithmetic_step_typo",
        lambda p: p["tybalt"]["generation"]["arithmetic"][0].update(groupy="cancer_type"),
        "`tybalt.generation.arithmetic[0].groupy` is not a known parameter",
    ),
    (
        "section_left_out",
        lambda p: p["data_processing"].update(gene_selection="mean"),
        "`data_processing.gene_selection` is not a known parameter; "
        "did you mean `data_processing.bulk.gene_selection`?",
    ),
    (
        "wrong_type",
        lambda p: p["vega"]["model"].update(hidden="wide"),
        "`vega.model.hidden` = 'wide': input should be a valid integer",
    ),
    (
        "unknown_top_level_section",
        lambda p: p.update(vgea={"training": {"max_epochs": 5}}),
        "`vgea` is not a known parameter section; did you mean `vega`?",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [c[1:] for c in PARAM_CASES], ids=[c[0] for c in PARAM_CASES]
)
def test_bad_parameters_are_named_with_the_closest_valid_key(
    mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    params = copy.deepcopy(DEFAULTS)
    mutate(params)
    problems = parameter_problems(params, DEFAULTS, params)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_numbers_are_accepted_where_labels_are_text() -> None:
    params = copy.deepcopy(DEFAULTS)
    params["vega"]["analysis"]["comparisons"] = [{"groupby": "louvain", "group1": 1, "group2": 0}]
    params["data_processing"]["perturbseq"]["control_label"] = 7
    assert parameter_problems(params, DEFAULTS, params) == []


def test_per_dataset_sections_are_checked_against_the_same_defaults() -> None:
    params = copy.deepcopy(DEFAULTS)
    params["vega"]["kang"] = copy.deepcopy(DEFAULTS["vega"])
    params["vega"]["kang"]["trainng"] = {"max_epochs": 5}
    problems = parameter_problems(params, DEFAULTS, ["vega"], dataset_names=["kang"])
    assert problems == [
        "`vega.kang.trainng` is not a known parameter; did you mean `vega.kang.training`?"
    ]


def test_a_typo_inherited_by_every_dataset_is_reported_once() -> None:
    params = copy.deepcopy(DEFAULTS)
    params["vega"]["trainng"] = {"max_epochs": 5}  # --params vega.trainng.max_epochs=5
    section = copy.deepcopy(params["vega"])
    for name in ("kang", "mine"):  # the loader copies the defaults into each dataset's section
        params["vega"][name] = copy.deepcopy(section)
    problems = parameter_problems(params, DEFAULTS, ["vega"], dataset_names=["kang", "mine"])
    assert problems == ["`vega.trainng` is not a known parameter; did you mean `vega.training`?"]


def test_sections_the_run_does_not_use_are_not_checked() -> None:
    params = copy.deepcopy(DEFAULTS)
    params["tybalt"]["trainng"] = {}
    assert parameter_problems(params, DEFAULTS, ["vega"]) == []
    assert len(parameter_problems(params, DEFAULTS, ["vega", "tybalt"])) == 1


def test_schema_follows_keys_added_to_the_defaults() -> None:
    defaults = copy.deepcopy(DEFAULTS)
    defaults["vega"]["training"]["new_option"] = 1
    value = copy.deepcopy(defaults["vega"])
    assert ParameterSchema(defaults).check("vega", value, "vega") == []
    assert ParameterSchema(DEFAULTS).check("vega", value, "vega") != []


# ----------------------------------------------------------------------------- registry and data


def _write_cells(path: Path) -> None:
    """60 cells: two conditions, three cell types, numeric cluster labels 0/1/2."""
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {
            "condition": np.repeat(["control", "stimulated"], 30),
            "cell_type": np.tile(["B", "NK", "CD14+Mono"], 20),
            "louvain": pd.Categorical(np.tile([0, 1, 2], 20)),
        },
        index=[f"cell{i}" for i in range(60)],
    )
    ad.AnnData(rng.poisson(1.0, (60, 5)).astype(np.float32), obs=obs).write_h5ad(path)


def _write_screen(path: Path) -> None:
    obs = pd.DataFrame(
        {"gene": ["non-targeting", "SPI1", "EP300"] * 4, "guide": [f"g{i}" for i in range(12)]},
        index=[f"cell{i}" for i in range(12)],
    )
    ad.AnnData(np.ones((12, 3), dtype=np.float32), obs=obs).write_h5ad(path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    raw = tmp_path / "data" / "01_raw"
    raw.mkdir(parents=True)
    _write_cells(raw / "cells.h5ad")
    _write_screen(raw / "screen.h5ad")
    (raw / "sets.gmt").write_text("SET_A\tna\tG1\tG2\n")
    (raw / "grn.csv").write_text("source,target\nSPI1,G1\n")
    (raw / "brca.tsv").write_text("gene\ts1\nG1\t1\n")
    (raw / "genes.txt").write_text("G1\n")
    return tmp_path


def _registry() -> dict[str, Any]:
    return {
        "datasets": {
            "cells": {
                "kind": "scrna",
                "file": "data/01_raw/cells.h5ad",
                "obs": {"condition": "condition", "cell_type": "cell_type", "batch": None},
                "comparisons": [
                    {"groupby": "condition", "group1": "stimulated", "group2": "control"},
                    {
                        "name": "innate",
                        "groupby": "condition",
                        "group1": "stimulated",
                        "group2": "control",
                        "cell_types": ["CD14+Mono"],
                    },
                ],
                "gsea_comparison": "innate",
                "gene_sets": ["sets"],
            },
            "screen": {
                "kind": "perturbseq",
                "file": "data/01_raw/screen.h5ad",
                "obs": {"perturbation": "gene", "target_gene": "gene"},
                "control_label": "non-targeting",
                "grn_reference": "grn",
            },
            "tumours": {
                "kind": "bulk",
                "cohorts": {"BRCA": "data/01_raw/brca.tsv"},
                "reference_genes": "data/01_raw/genes.txt",
                "obs": {"cancer_type": "cancer_type"},
            },
        },
        "gene_sets": {"sets": {"file": "data/01_raw/sets.gmt"}},
        "grn_references": {
            "grn": {"file": "data/01_raw/grn.csv", "source_col": "source", "target_col": "target"}
        },
    }


def _validate(registry: dict[str, Any], root: Path) -> None:
    validate_run(registry, {}, [], list(registry["datasets"]), root)


def test_a_valid_registry_passes(project: Path) -> None:
    _validate(_registry(), project)


def test_numeric_labels_match_obs_labels_as_text(project: Path) -> None:
    registry = _registry()
    registry["datasets"]["cells"]["comparisons"].append(
        {"groupby": "louvain", "group1": 1, "group2": 0}
    )
    _validate(registry, project)


def test_gsea_can_be_switched_off(project: Path) -> None:
    registry = _registry()
    registry["datasets"]["cells"]["gsea_comparison"] = None
    _validate(registry, project)


def _cells(r: dict[str, Any]) -> dict[str, Any]:
    return r["datasets"]["cells"]


RegistryCase = tuple[str, Callable[[dict[str, Any], Path], None], str]

REGISTRY_CASES: list[RegistryCase] = [
    (
        "unknown_obs_column",
        lambda r, _: _cells(r)["obs"].update(condition="conditon"),
        "`datasets.cells.obs.condition` = 'conditon' is not an obs column of "
        "data/01_raw/cells.h5ad; use one of: cell_type, condition, louvain.",
    ),
    (
        "unknown_group_label",
        lambda r, _: _cells(r)["comparisons"][0].update(group1="stimmulated"),
        "`datasets.cells.comparisons[0].group1` = 'stimmulated' is not a label of obs "
        "column 'condition'; use one of: control, stimulated.",
    ),
    (
        "unknown_groupby_column",
        lambda r, _: _cells(r)["comparisons"][0].update(groupby="leiden"),
        "`datasets.cells.comparisons[0].groupby` = 'leiden' is not an obs column",
    ),
    (
        "unknown_cell_type",
        lambda r, _: _cells(r)["comparisons"][1].update(cell_types=["Monocyte"]),
        "`datasets.cells.comparisons[1].cell_types` = 'Monocyte' is not a label of obs column "
        "'cell_type'",
    ),
    (
        "gsea_contrast_not_a_comparison",
        lambda r, _: _cells(r).update(gsea_comparison="innate_cells:stimulated_vs_control"),
        "`datasets.cells.gsea_comparison` = 'innate_cells:stimulated_vs_control' is none of the "
        "dataset's comparisons (condition:stimulated_vs_control, innate)",
    ),
    (
        "missing_gmt_file",
        lambda r, root: (root / "data" / "01_raw" / "sets.gmt").unlink(),
        "`gene_sets.sets.file` = 'data/01_raw/sets.gmt': no such file",
    ),
    (
        "missing_raw_file",
        lambda r, root: (root / "data" / "01_raw" / "cells.h5ad").unlink(),
        "`datasets.cells.file` = 'data/01_raw/cells.h5ad': no such file",
    ),
    (
        "raw_file_not_h5ad",
        lambda r, root: (root / "data" / "01_raw" / "cells.h5ad").write_text("not hdf5"),
        "`datasets.cells.file` = 'data/01_raw/cells.h5ad' is not a readable .h5ad file",
    ),
    (
        "missing_bulk_cohort",
        lambda r, root: (root / "data" / "01_raw" / "brca.tsv").unlink(),
        "`datasets.tumours.cohorts.BRCA` = 'data/01_raw/brca.tsv': no such file",
    ),
    (
        "missing_bulk_gene_list",
        lambda r, root: (root / "data" / "01_raw" / "genes.txt").unlink(),
        "`datasets.tumours.reference_genes` = 'data/01_raw/genes.txt': no such file",
    ),
    (
        "unknown_control_label",
        lambda r, _: r["datasets"]["screen"].update(control_label="NTC"),
        "`datasets.screen.control_label` = 'NTC' is not a label of obs column 'gene'",
    ),
    (
        "unknown_collection",
        lambda r, _: _cells(r).update(gene_sets=["reactome"]),
        "`datasets.cells.gene_sets` = 'reactome' is not listed under `gene_sets` (listed: sets)",
    ),
    (
        "unknown_grn_reference",
        lambda r, _: r["datasets"]["screen"].update(grn_reference="aracne"),
        "`datasets.screen.grn_reference` = 'aracne' is not listed under `grn_references`",
    ),
    (
        "unknown_kind",
        lambda r, _: _cells(r).update(kind="scRNA"),
        "`datasets.cells.kind` = 'scRNA' is not a dataset kind; use one of: scrna, perturbseq, bulk.",
    ),
    (
        "entry_key_typo",
        lambda r, _: _cells(r).update(comparison=[]),
        "`datasets.cells.comparison` is not a known parameter; did you mean "
        "`datasets.cells.comparisons`?",
    ),
    (
        "missing_summary_stats",
        lambda r, _: r["datasets"]["screen"].update(summary_stats={"file": "data/01_raw/s2.csv"}),
        "`datasets.screen.summary_stats.file` = 'data/01_raw/s2.csv': no such file",
    ),
    (
        "summary_stats_without_the_filter_columns",
        lambda r, root: (
            (root / "data" / "01_raw" / "s2.csv").write_text("perturbation,knockdown\nSPI1,-0.9\n"),
            r["datasets"]["screen"].update(summary_stats={"file": "data/01_raw/s2.csv"}),
        ),
        "`datasets.screen.summary_stats` = 'data/01_raw/s2.csv' lacks the column(s) "
        "['genetic perturbation', 'Number of DEGs (anderson-darling)', 'percent knockdown', "
        "'number of cells (filtered)'] that the strong-perturbation filter reads",
    ),
    (
        "summary_stats_sheet_typo",
        lambda r, _: r["datasets"]["screen"].update(
            summary_stats={"file": "data/01_raw/s2.xlsx", "sheets": "TabB"}
        ),
        "`datasets.screen.summary_stats.sheets` is not a known parameter; did you mean "
        "`datasets.screen.summary_stats.sheet`?",
    ),
    (
        "grn_reference_without_columns",
        lambda r, _: r["grn_references"]["grn"].pop("source_col"),
        "`grn_references.grn.source_col` is missing",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [c[1:] for c in REGISTRY_CASES], ids=[c[0] for c in REGISTRY_CASES]
)
def test_bad_registry_or_data_is_named_in_one_message(
    project: Path, mutate: Callable[[dict[str, Any], Path], None], expected: str
) -> None:
    registry = _registry()
    mutate(registry, project)
    with pytest.raises(GenevaeConfigError) as raised:
        _validate(registry, project)
    message = str(raised.value)
    assert isinstance(raised.value, GenevaeInputError)
    assert message.startswith("The configuration has 1 problem; nothing was run or written.")
    assert expected in message
    assert "Traceback" not in message and "\n\n" not in message


def test_a_summary_table_with_the_filter_columns_passes(project: Path) -> None:
    registry = _registry()
    path = project / "data" / "01_raw" / "s2.xlsx"
    pd.DataFrame(
        {
            "genetic perturbation": ["1_SPI1_P1"],
            "Number of DEGs (anderson-darling)": [80],
            "percent knockdown": [-0.8],
            "number of cells (filtered)": [120],
        }
    ).to_excel(path, sheet_name="TabB", index=False)
    screen = registry["datasets"]["screen"]
    screen["summary_stats"] = {"file": "data/01_raw/s2.xlsx", "sheet": "TabB"}
    _validate(registry, project)
    screen["summary_stats"]["sheet"] = "TabC"
    with pytest.raises(GenevaeConfigError, match="does not read as a table .*TabC"):
        _validate(registry, project)


def test_all_problems_are_listed_together(project: Path) -> None:
    registry = _registry()
    _cells(registry)["obs"]["condition"] = "conditon"
    _cells(registry)["gsea_comparison"] = "innate_cells"
    (project / "data" / "01_raw" / "screen.h5ad").unlink()
    with pytest.raises(GenevaeConfigError, match="The configuration has 3 problems") as raised:
        _validate(registry, project)
    for key in ("datasets.cells.obs.condition", "datasets.cells.gsea_comparison"):
        assert key in str(raised.value)
    assert "datasets.screen.file" in str(raised.value)


def test_a_raw_file_the_run_does_not_read_may_be_absent(project: Path) -> None:
    registry = _registry()
    (project / "data" / "01_raw" / "cells.h5ad").unlink()
    _cells(registry)["obs"]["condition"] = "conditon"  # not checkable without the file
    validate_run(registry, {}, [], ["cells"], project, loaded=["cells.processed"])
    with pytest.raises(GenevaeConfigError, match="datasets.cells.file"):
        validate_run(registry, {}, [], ["cells"], project, loaded=["cells.raw"])


def test_vega_must_use_a_collection_the_dataset_builds(project: Path) -> None:
    params = _registry() | {"vega": {"cells": {"gene_module_collection": "kegg"}}}
    defaults = {"vega": {"gene_module_collection": "reactome"}}
    with pytest.raises(GenevaeConfigError) as raised:
        validate_run(params, defaults, ["vega"], ["cells"], project)
    assert (
        "`vega.cells.gene_module_collection` = 'kegg' is not among the dataset's gene_sets "
        "(sets); choose one of them, or add it to `datasets.cells.gene_sets`."
    ) in str(raised.value)
    validate_run(params, defaults, ["data_processing"], ["cells"], project)  # vega not run


VEGA_DEFAULTS = {
    "vega": {"analysis": {"cell_type_key": None, "comparisons": [], "gsea": {"comparison": None}}}
}


def _with_vega_section(registry: dict[str, Any]) -> dict[str, Any]:
    """What the config loader derives: the entry's comparisons in ``vega.<dataset>``."""
    analysis = {
        "cell_type_key": "cell_type",
        "comparisons": copy.deepcopy(_cells(registry)["comparisons"]),
        "gsea": {"comparison": _cells(registry)["gsea_comparison"]},
    }
    return registry | {"vega": {"cells": {"analysis": analysis}}}


def test_comparisons_set_in_the_vega_section_are_checked_too(project: Path) -> None:
    params = _with_vega_section(_registry())
    validate_run(params, VEGA_DEFAULTS, ["vega"], ["cells"], project)  # same as the registry
    analysis = params["vega"]["cells"]["analysis"]
    analysis["comparisons"][1]["cell_types"] = ["Monocyte"]  # e.g. --params vega.cells…
    analysis["gsea"]["comparison"] = "innate_cells"
    with pytest.raises(GenevaeConfigError, match="The configuration has 2 problems") as raised:
        validate_run(params, VEGA_DEFAULTS, ["vega"], ["cells"], project)
    message = str(raised.value)
    assert "`vega.cells.analysis.comparisons[1].cell_types` = 'Monocyte'" in message
    assert "`vega.cells.analysis.gsea.comparison` = 'innate_cells' is none of" in message


def test_only_the_datasets_of_the_run_are_read(project: Path) -> None:
    registry = _registry()
    (project / "data" / "01_raw" / "screen.h5ad").unlink()
    validate_run(registry, {}, [], ["cells"], project)
    with pytest.raises(GenevaeConfigError, match="datasets.screen.file"):
        validate_run(registry, {}, [], ["screen"], project)


# ----------------------------------------------------------------------------- the shipped project


@pytest.mark.filterwarnings("ignore:register_new_resolver")
@pytest.mark.parametrize("env", ["local", "test", "demo"])
def test_every_pipeline_of_the_shipped_project_passes_its_checks(env: str) -> None:
    """No false alarm: each registered pipeline's sections and datasets, as a run sees them."""
    from kedro.framework.project import configure_project, pipelines, settings

    from genevae.config import GenevaeConfigLoader
    from genevae.validation import reference_problems, registry_problems
    from genevae.validation_hook import base_defaults, used_by

    configure_project("genevae")
    conf = str(PROJECT_ROOT / settings.CONF_SOURCE)
    loader = GenevaeConfigLoader(conf, env=env, **settings.CONFIG_LOADER_ARGS)
    params = loader["parameters"]
    registered = set(params["datasets"])
    defaults = base_defaults(loader)
    assert registry_problems(params) == [] and reference_problems(params) == []
    for name in ("data_processing", "vega", "tybalt", "gpo_vae", "evaluation"):
        sections, datasets = used_by(pipelines[name], registered, set(params))
        assert datasets, f"{name} uses no registered dataset"
        assert parameter_problems(params, defaults, sections, registered) == [], name
