"""The user guide cannot rot: every parameter, catalog entry and dataset-registry key is
documented, every link resolves, and every ``--params`` example names real parameters."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.framework.cli.utils import _split_params

from genevae.registry import Registry, dataset_parameters
from genevae.training.trainer import TrainingSettings
from tests.conftest import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
BASE = PROJECT_ROOT / "conf" / "base"
PIPELINE_DOCS = DOCS / "pipelines"
TRAINING_KEYS = {field.name for field in dataclasses.fields(TrainingSettings)}
MARKDOWN = sorted([PROJECT_ROOT / "README.md", *DOCS.rglob("*.md")])


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _pipelines_with(kind: str) -> list[str]:
    return sorted(p.stem.removeprefix(f"{kind}_") for p in BASE.glob(f"{kind}_*.yml"))


def _leaf_paths(tree: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Dotted paths of the values; a list or an empty mapping is one value."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaf_paths(value, (*prefix, str(key)))
    else:
        yield prefix


def _code_spans(text: str) -> set[str]:
    return {span.removesuffix(".*") for span in re.findall(r"`([^`\n]+)`", text)}


def _documented(path: tuple[str, ...], spans: set[str]) -> bool:
    """The full dotted path, or an ancestor of at least two keys (a dict-valued row)."""
    candidates = {".".join(path[:n]) for n in range(min(2, len(path)), len(path) + 1)}
    return bool(candidates & spans)


@pytest.mark.parametrize("pipeline", _pipelines_with("parameters"))
def test_every_parameter_is_documented(pipeline: str) -> None:
    page = PIPELINE_DOCS / f"{pipeline}.md"
    assert page.is_file(), f"docs/pipelines/{pipeline}.md is missing"
    spans = _code_spans(page.read_text())
    for top, tree in _yaml(BASE / f"parameters_{pipeline}.yml").items():
        missing = [
            ".".join(path) for path in _leaf_paths(tree) if path and not _documented(path, spans)
        ]
        assert not missing, f"docs/pipelines/{pipeline}.md does not document {top}: {missing}"


@pytest.mark.parametrize("pipeline", _pipelines_with("catalog"))
def test_every_catalog_entry_is_documented(pipeline: str) -> None:
    page = PIPELINE_DOCS / f"{pipeline}.md"
    assert page.is_file(), f"docs/pipelines/{pipeline}.md is missing"
    spans = _code_spans(page.read_text())
    entries = [name for name in _yaml(BASE / f"catalog_{pipeline}.yml") if not name.startswith("_")]
    # "vega.{dataset}.model@saved" is documented as itself or as "vega.{dataset}.model"
    missing = [name for name in entries if not {name, name.split("@")[0]} & spans]
    assert not missing, f"docs/pipelines/{pipeline}.md does not mention {missing}"


REGISTRY_PAGE = DOCS / "configuration.md"


def _registry_keys() -> set[str]:
    """Every key the shipped registry uses: blocks, entry keys, ``obs.<key>``, file fields."""
    registry = _registry()
    keys = {"datasets", "gene_sets", "grn_references"}
    for entry in registry.datasets.values():
        keys |= set(entry)
        keys |= {f"obs.{key}" for key in entry.get("obs") or {}}
    for block in (registry.gene_sets, registry.grn_references):
        keys |= {key for entry in block.values() for key in entry}
    return keys


def test_every_registry_key_is_documented() -> None:
    spans = {span.removesuffix(":") for span in _code_spans(REGISTRY_PAGE.read_text())}
    missing = sorted(_registry_keys() - spans)
    assert not missing, f"docs/configuration.md does not document datasets.yml keys {missing}"


def test_every_registered_demo_dataset_is_named_in_the_data_page() -> None:
    text = (DOCS / "data.md").read_text()
    registry = _registry()
    names = [*registry.datasets, *registry.gene_sets, *registry.grn_references]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"docs/data.md does not name the registered {missing}"


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)}


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: link to missing {target}"
        if anchor and linked.is_file():
            assert anchor in _anchors(linked), f"{page.name}: no heading for #{anchor}"


def _registry() -> Registry:
    return Registry.from_config(_yaml(BASE / "datasets.yml"))


def _all_parameters() -> dict[str, Any]:
    """The parameters a run sees: the files plus each dataset's section (``vega.kang``)."""
    merged: dict[str, Any] = {}
    for path in BASE.glob("parameters*.yml"):
        merged.update(_yaml(path))
    return dataset_parameters(merged, _registry())


def _params_examples() -> list[tuple[str, str]]:
    examples = []
    for page in MARKDOWN:
        for value in re.findall(r'--params "([^"]+)"', page.read_text()):
            examples.append((page.name, value))
    return examples


@pytest.mark.parametrize("where,value", _params_examples())
def test_params_examples_name_real_parameters(where: str, value: str) -> None:
    parameters = _all_parameters()
    overrides = _split_params(None, None, value)  # what `kedro run --params` does
    for path in _leaf_paths(overrides):
        if len(path) >= 2 and path[-2] == "training" and path[-1] in TRAINING_KEYS:
            continue  # every model's training section accepts all TrainingSettings keys
        node: Any = parameters
        for key in path:
            assert isinstance(node, dict) and key in node, (
                f"{where}: --params {value!r} names {'.'.join(path)}, which is not a parameter"
            )
            node = node[key]


def test_readme_starts_with_the_two_commands() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:]]
    assert [c for c in commands if c] == ["make run", "make test"]
    first_section = readme.find("\n## ")
    assert first_section == -1 or readme.index("make run") < first_section


def test_make_targets_in_the_docs_exist() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    for page in MARKDOWN:
        for target in re.findall(r"`make ([a-z][\w-]*)", page.read_text()):
            assert target in targets, f"{page.name} mentions `make {target}`, not in the Makefile"
