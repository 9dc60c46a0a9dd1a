"""Instantiate a pipeline template for one registered dataset.

A template's nodes read ``params:<pipeline>…``; the instance runs under the namespace
``<pipeline>.<dataset>`` (kedro-viz draws one collapsible group per dataset, ``--namespaces``
selects one) and reads the dataset's effective section ``params:<pipeline>.<dataset>…``
(built by genevae.registry.dataset_parameters). Dataset names are given in full by the
template (``kang.processed``, ``vega.kang.model``), so they are not prefixed again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kedro.pipeline import Node, Pipeline

if TYPE_CHECKING:
    from genevae.registry import Registry

NodeTemplate = Callable[[str, Mapping[str, Any]], list[Node]]


def instantiate(pipeline: str, dataset: str, node_list: Iterable[Node]) -> Pipeline:
    """``node_list`` under namespace ``<pipeline>.<dataset>`` with the dataset's parameters."""
    node_list = list(node_list)
    prefix = f"params:{pipeline}"
    used = {
        name
        for node in node_list
        for name in node.inputs
        if name == prefix or name.startswith(prefix + ".")
    }
    return Pipeline(
        node_list,
        namespace=f"{pipeline}.{dataset}",
        prefix_datasets_with_namespace=False,
        parameters={name: f"{prefix}.{dataset}{name[len(prefix) :]}" for name in used},
        tags=[pipeline, dataset],
    )


def per_dataset(
    pipeline: str, kind: str | None, template: NodeTemplate, registry: Registry | None = None
) -> Pipeline:
    """``template`` instantiated for every registered dataset of ``kind`` (all kinds: None).

    Without ``registry``, the one of the run being set up (genevae.config).
    """
    from genevae.config import current_registry

    registry = registry or current_registry()
    names = registry.of_kind(kind) if kind is not None else list(registry.datasets)
    return sum(
        (instantiate(pipeline, name, template(name, registry.datasets[name])) for name in names),
        Pipeline([]),
    )
