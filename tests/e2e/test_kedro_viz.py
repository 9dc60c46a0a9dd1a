"""kedro-viz on a project where data_processing and vega have run: every pipeline is drawn
with all its nodes, each dataset is a collapsible group, layers follow the data flow, the
lineage runs from the raw file through the model into the evaluation report, and dataset
previews open.

Screenshots go to tests/e2e/artifacts/kedro_viz_*.png.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from genevae.registry import MODEL_PIPELINE, Registry
from tests.conftest import PROJECT_ROOT
from tests.e2e.browser import Server, browse, text_of
from tests.e2e.fixtures import all_pipelines
from tests.project import DATA_LAYERS

# Numbered like the data folders: kedro-viz orders layers that the data flow leaves unordered
# (e.g. the free inputs of a single pipeline) alphabetically.
LAYERS = DATA_LAYERS
# Types that hold no file of their own (metrics go to MLflow, memory stays in memory).
# OptionalDataset entries are "@optional" views of a file another entry (with a layer) owns.
UNLAYERED_TYPES = (
    "MemoryDataset",
    "MlflowMetricsHistoryDataset",
    "MlflowMetricDataset",
    "OptionalDataset",
)


@pytest.fixture(scope="module")
def viz(ui_servers: dict[str, Server]) -> Server:
    return ui_servers["kedro_viz"]


def _ids_by_name(graph: dict[str, Any]) -> dict[str, str]:
    return {node["name"]: node["id"] for node in graph["nodes"] if node["type"] == "data"}


def _reachable(graph: dict[str, Any], start: str) -> set[str]:
    """Ids of every node downstream of ``start`` (itself included), edge by edge."""
    children: dict[str, set[str]] = {}
    for edge in graph["edges"]:
        children.setdefault(edge["source"], set()).add(edge["target"])
    reached, frontier = set(), [start]
    while frontier:
        node = frontier.pop()
        if node not in reached:
            reached.add(node)
            frontier.extend(children.get(node, ()))
    return reached


def _dataset_namespaces() -> dict[str, str]:
    """``<pipeline>.<dataset>`` → its pipeline, for every dataset of the shipped registry."""
    config = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "datasets.yml").read_text())
    registry = Registry.from_config(config)
    namespaces = {}
    for name, entry in registry.datasets.items():
        for pipeline in ("data_processing", MODEL_PIPELINE[entry["kind"]]):
            namespaces[f"{pipeline}.{name}"] = pipeline
    return namespaces


@pytest.mark.browser
def test_every_pipeline_is_drawn_with_all_its_nodes(
    viz: Server, chromium: str, artifacts_dir: Path
) -> None:
    registered = all_pipelines()
    assert {p["id"] for p in viz.get("/api/main")["pipelines"]} == set(registered)

    for name, pipeline in registered.items():
        expected = Counter(node.name.rsplit(".", 1)[-1] for node in pipeline.nodes)
        if not expected:
            continue  # a placeholder pipeline has nothing to draw yet
        graph = viz.get(f"/api/pipelines/{name}")
        tasks = [node for node in graph["nodes"] if node["type"] == "task"]
        assert Counter(node["name"] for node in tasks) == expected, name
        if name not in ("__default__", "all"):  # the unions of the others
            untagged = [node["name"] for node in tasks if name not in node["tags"]]
            assert not untagged, f"{name} nodes without the {name!r} tag: {untagged}"

        dom = browse(
            chromium,
            f"{viz.url}/?pid={name}&expandAllPipelines=true",
            screenshot=artifacts_dir / f"kedro_viz_{name}.png",
            window=(1920, 1200),
        )
        drawn = set(text_of(dom, "pipeline-node__text"))
        assert set(expected) <= drawn, f"{name}: not drawn {set(expected) - drawn}"


@pytest.mark.browser
def test_layers_follow_the_data_flow(viz: Server) -> None:
    for name in all_pipelines():
        graph = viz.get(f"/api/pipelines/{name}")
        nodes = {node["id"]: node for node in graph["nodes"]}
        for node in nodes.values():
            kind = node.get("dataset_type") or ""  # None for a dataset with transcoded views
            if node["type"] == "data" and not kind.endswith(UNLAYERED_TYPES):
                assert node["layer"] in LAYERS, f"{node['name']} has layer {node['layer']!r}"
        inputs: dict[str, list[str]] = {}
        outputs: dict[str, list[str]] = {}
        for edge in graph["edges"]:
            source, target = nodes.get(edge["source"]), nodes.get(edge["target"])
            if source is None or target is None:
                continue
            if target["type"] == "task" and source.get("layer"):
                inputs.setdefault(target["id"], []).append(source)
            if source["type"] == "task" and target.get("layer"):
                outputs.setdefault(source["id"], []).append(target)
        for task_id, produced in outputs.items():
            for before in inputs.get(task_id, []):
                for after in produced:
                    assert LAYERS.index(before["layer"]) <= LAYERS.index(after["layer"]), (
                        f"{before['name']} ({before['layer']}) → {nodes[task_id]['name']} → "
                        f"{after['name']} ({after['layer']})"
                    )


def drawn_layers(graph: dict[str, Any]) -> list[str]:
    """The layer bands kedro-viz draws: the API's order, only layers with a node in the view
    (the API lists every layer of the project; in a view, layers without nodes have no
    dependencies and come first)."""
    present = {node.get("layer") for node in graph["nodes"]}
    return [layer for layer in graph["layers"] if layer in present]


@pytest.mark.browser
def test_layer_bands_run_from_raw_to_reporting_in_every_view(
    viz: Server, chromium: str, artifacts_dir: Path
) -> None:
    for name in all_pipelines():
        layers = drawn_layers(viz.get(f"/api/pipelines/{name}"))
        assert layers == sorted(layers, key=LAYERS.index), f"{name}: {layers}"
    vega = drawn_layers(viz.get("/api/pipelines/vega"))
    assert vega[:3] == ["01_raw", "03_primary", "04_feature"]  # free inputs, in data order
    browse(
        chromium,
        f"{viz.url}/?pid=vega",
        screenshot=artifacts_dir / "kedro_viz_vega_layers.png",
        profile=viz.profile,
    )


@pytest.mark.browser
def test_no_tour_pop_up_covers_the_graph(viz: Server, chromium: str, artifacts_dir: Path) -> None:
    """With the hints switched off (once, in kedro-viz's settings) the graph is unobstructed;
    a fresh browser shows the tour, which is what the check looks for."""
    fresh = browse(chromium, f"{viz.url}/?pid=vega")
    assert "Workflow run status" in fresh or "feature-hints" in fresh
    dom = browse(
        chromium,
        f"{viz.url}/?pid=vega",
        screenshot=artifacts_dir / "kedro_viz_no_pop_up.png",
        profile=viz.profile,
    )
    assert "pipeline-node__text" in dom  # the graph is drawn
    assert "Workflow run status" not in dom and 'class="feature-hints' not in dom


@pytest.mark.browser
def test_figure_folders_preview_as_a_contact_sheet(viz: Server) -> None:
    ids = _ids_by_name(viz.get("/api/pipelines/vega"))
    for name in ("vega.kang.volcano_plots", "vega.kang.latent_maps"):
        node = viz.get(f"/api/nodes/{ids[name]}")
        assert node["preview_type"] == "ImagePreview", name
        assert base64.b64decode(node["preview"]).startswith(b"\x89PNG"), name
    report = viz.get(f"/api/nodes/{ids['vega.kang.report']}")
    assert report["preview_type"] == "HTMLPreview"
    assert "Top modules by |ln BF|" in report["preview"]


@pytest.mark.browser
def test_each_dataset_is_a_collapsible_group(
    viz: Server, chromium: str, artifacts_dir: Path
) -> None:
    """Pipeline ``all``: one modular-pipeline group per pipeline × registered dataset
    (``vega.kang``, ``data_processing.kang``, …), nested in its pipeline's group, holding that
    dataset's nodes; the sidebar lists them and the collapsed view draws the pipeline boxes."""
    graph = viz.get("/api/pipelines/all")
    groups = graph["modular_pipelines"]
    tasks = [node for node in graph["nodes"] if node["type"] == "task"]
    for namespace, pipeline in _dataset_namespaces().items():
        assert namespace in groups, f"no group {namespace!r} in kedro-viz"
        assert {"id": namespace, "type": "modularPipeline"} in groups[pipeline]["children"]
        members = [node for node in tasks if namespace in node["modular_pipelines"]]
        assert members, f"group {namespace!r} holds no node"
        dataset = namespace.split(".")[1]
        assert all(dataset in node["tags"] for node in members), namespace

    dom = browse(
        chromium,
        f"{viz.url}/?pid=all&expandAllPipelines=true",
        screenshot=artifacts_dir / "kedro_viz_dataset_groups.png",
        window=(1920, 1200),
    )
    for namespace in _dataset_namespaces():
        assert f'data-test="node-list-tree-item--row--{namespace}"' in dom, namespace
    collapsed = browse(chromium, f"{viz.url}/?pid=all", window=(1920, 1200))
    drawn = set(text_of(collapsed, "pipeline-node__text"))
    assert set(_dataset_namespaces().values()) <= drawn  # one box per pipeline, folded


@pytest.mark.browser
def test_a_user_can_follow_a_raw_file_to_the_bayes_factors(viz: Server) -> None:
    """kang.raw → … → the Bayes-factor table and its volcano plots, edge by edge."""
    graph = viz.get("/api/pipelines/__default__")
    ids = _ids_by_name(graph)
    reached = _reachable(graph, ids["kang.raw"])
    assert ids["vega.kang.differential_activity"] in reached
    assert ids["vega.kang.volcano_plots"] in reached


@pytest.mark.browser
def test_the_model_feeds_the_evaluation_report(
    viz: Server, chromium: str, artifacts_dir: Path
) -> None:
    """``vega.kang.model@saved`` (written by vega) and ``@optional`` (read by the evaluation)
    are one dataset node, with edges into the evaluation down to the report."""
    graph = viz.get("/api/pipelines/all")
    ids = _ids_by_name(graph)
    assert not [name for name in ids if "@" in name], "a transcoded view drawn as its own node"
    evaluation_tasks = {
        node["id"]
        for node in graph["nodes"]
        if node["type"] == "task" and "evaluation" in node["tags"]
    }
    for model in ("vega.kang.model", "tybalt.tcga.model", "gpo_vae.adamson.comparison"):
        readers = {e["target"] for e in graph["edges"] if e["source"] == ids[model]}
        assert readers & evaluation_tasks, f"no edge from {model} into the evaluation"
        assert ids["evaluation_report"] in _reachable(graph, ids[model]), model

    details = viz.get(f"/api/nodes/{ids['vega.kang.model']}")
    assert {type_.rsplit(".", 1)[-1] for type_ in details["transcoded_types"]} == {
        "ModelBundleDataset",
        "OptionalDataset",
    }
    dom = browse(
        chromium,
        f"{viz.url}/?pid=evaluation&sid={ids['vega.kang.model']}",
        screenshot=artifacts_dir / "kedro_viz_model_to_evaluation.png",
        window=(1920, 1200),
    )
    assert "vega.kang.model" in text_of(dom, "pipeline-node__text")
    assert "OptionalDataset" in dom and "ModelBundleDataset" in dom  # the side panel


@pytest.mark.browser
def test_dataset_previews_open(viz: Server, chromium: str, artifacts_dir: Path) -> None:
    """Tables, ``.h5ad`` files and figures preview. (kedro-viz 12.5 previews no dataset with
    transcoded views, e.g. ``vega.kang.differential_activity@saved``/``@optional``.)"""
    ids = _ids_by_name(viz.get("/api/pipelines/vega"))

    table = viz.get(f"/api/nodes/{ids['vega.kang.top_module_genes']}")
    assert table["preview_type"] == "TablePreview"
    assert {"module", "gene", "weight"} <= set(table["preview"]["columns"])
    assert len(table["preview"]["data"]) == 20  # preview_args.nrows in catalog_vega.yml

    cells = viz.get(f"/api/nodes/{ids['kang.processed']}")
    assert cells["preview_type"] == "TablePreview"  # AnnDataDataset.preview: head of obs
    assert {"obs_name", "cell_type", "condition"} <= set(cells["preview"]["columns"])

    figure = viz.get(f"/api/nodes/{ids['vega.kang.training_curves']}")
    assert figure["preview_type"] == "ImagePreview"
    assert base64.b64decode(figure["preview"]).startswith(b"\x89PNG")

    dom = browse(
        chromium,
        f"{viz.url}/?pid=vega&sid={ids['vega.kang.top_module_genes']}",
        screenshot=artifacts_dir / "kedro_viz_preview_table.png",
    )
    assert "Expand preview" in dom and "weight" in dom and "REACTOME_" in dom
    dom = browse(
        chromium,
        f"{viz.url}/?pid=vega&sid={ids['vega.kang.training_curves']}",
        screenshot=artifacts_dir / "kedro_viz_preview_figure.png",
    )
    assert 'pipeline-metadata__plot-image" src="data:image/png;base64,' in dom


def _viz_metadata(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry's kedro-viz metadata; an ``@optional`` view has its wrapped dataset's."""
    own = (entry.get("metadata") or {}).get("kedro-viz")
    wrapped = entry.get("dataset")
    if own is None and isinstance(wrapped, dict):
        return _viz_metadata(wrapped)
    return own or {}


def test_catalog_entries_have_a_layer_and_a_working_preview() -> None:
    """Static: every stored dataset sits on a data layer; figures (also folders) preview.

    A MatplotlibDataset saving a dict of figures writes a folder, which kedro-viz cannot
    preview; genevae's FigureDataset previews it as a contact sheet.
    """
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("catalog*.yml")):
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
            if name.startswith("_") or str(entry["type"]).endswith(UNLAYERED_TYPES):
                continue
            viz_meta = _viz_metadata(entry)
            assert viz_meta.get("layer") in LAYERS, f"{path.name}: {name} has no valid layer"
            figure_folder = (
                entry["type"].endswith("MatplotlibDataset") and not Path(entry["filepath"]).suffix
            )
            assert not figure_folder, f"{path.name}: {name} is a figure folder; use FigureDataset"
            if entry["type"].endswith(("FigureDataset", "HTMLReportDataset")):
                assert viz_meta.get("preview", True), f"{path.name}: {name} turns its preview off"
