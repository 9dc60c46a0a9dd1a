"""``kedro run`` (genevae.cli) ends bad input with its message and status 2; the hook's scope.

Kedro's own run is replaced by a stub here, so these tests take milliseconds; the real
subprocess runs are in tests/reliability/test_config_checks.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from kedro.io import DatasetError
from kedro.pipeline import Node, Pipeline

from genevae import cli as project_cli
from genevae.errors import GenevaeInputError
from genevae.validation_hook import used_by


def _raise(error: Exception) -> Any:
    def run(**_: Any) -> None:
        raise error

    return run


def _wrapped_input_error() -> DatasetError:
    """What Kedro raises when a dataset's load fails on bad input."""
    try:
        try:
            raise GenevaeInputError("obs has no column 'conditon'; set obs.condition.")
        except GenevaeInputError as cause:
            raise DatasetError("Failed while loading data from dataset kang.raw") from cause
    except DatasetError as error:
        return error


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch):
    def run(error: Exception, *args: str, env: dict[str, str] | None = None) -> Any:
        monkeypatch.setattr(project_cli.kedro_run, "callback", _raise(error))
        return CliRunner().invoke(project_cli.cli, ["run", *args], env=env or {})

    return run


def test_bad_input_prints_its_message_and_exits_2(invoke) -> None:
    result = invoke(_wrapped_input_error())
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: obs has no column 'conditon'; set obs.condition.",
        "(run again with --verbose for the traceback)",
    ]


@pytest.mark.parametrize(
    ("args", "env"), [(["--verbose"], {}), ([], {"GENEVAE_VERBOSE": "1"})], ids=["flag", "env"]
)
def test_verbose_lets_the_error_through(invoke, args: list[str], env: dict[str, str]) -> None:
    result = invoke(_wrapped_input_error(), *args, env=env)
    assert isinstance(result.exception, DatasetError)
    assert result.exit_code == 1


def test_other_errors_keep_their_traceback(invoke) -> None:
    result = invoke(RuntimeError("a bug"))
    assert isinstance(result.exception, RuntimeError)
    assert result.exit_code == 1


def test_run_keeps_every_option_of_kedros_run() -> None:
    ours = {p.name for p in project_cli.cli.commands["run"].params}
    assert {p.name for p in project_cli.kedro_run.params} | {"verbose"} == ours


def _node(inputs: list[str], namespace: str | None = None) -> Node:
    return Node(lambda *_: None, inputs, None, namespace=namespace)


def test_the_hook_checks_the_sections_and_datasets_the_nodes_use() -> None:
    pipeline = Pipeline(
        [
            _node(["kang_processed", "params:vega.kang.training"], namespace="vega.kang"),
            _node(["params:data_processing.mine.scrna"]),
            _node(["adamson_processed"], namespace="gpo_vae.adamson"),
        ]
    )
    registered = {"kang", "mine", "adamson", "tcga"}
    sections, datasets = used_by(pipeline, registered, {"vega", "tybalt"})
    assert sections == {"vega", "data_processing"}
    assert datasets == {"kang", "mine", "adamson"}


def test_a_node_reading_all_parameters_uses_every_section() -> None:
    sections, datasets = used_by(Pipeline([_node(["parameters"])]), set(), {"vega", "tybalt"})
    assert (sections, datasets) == ({"vega", "tybalt"}, set())
