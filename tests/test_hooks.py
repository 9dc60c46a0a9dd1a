"""Run tags a reader can use: the full command and the runner's name."""

from __future__ import annotations

from genevae.hooks import _runner_name, kedro_command


def test_kedro_command_keeps_env_params_and_selection():
    command = kedro_command(
        {
            "pipeline_names": ["vega"],
            "env": "demo",
            "runtime_params": {"vega": {"training": {"max_epochs": 3}}, "seed": 1},
            "tags": None,
            "node_names": ["report"],
            "load_versions": {"kang_processed": "2026-12-07T21.25.52.058Z"},
            "runner": "<kedro.runner.parallel_runner.ParallelRunner object at 0x7f>",
        }
    )
    assert command == (
        "kedro run --pipelines vega --env demo --params vega.training.max_epochs=3,seed=1 "
        "--nodes report --load-versions kang_processed:2026-12-07T21.25.52.058Z "
        "--runner ParallelRunner"
    )


def test_kedro_command_of_a_plain_run_has_no_defaults_spelled_out():
    assert kedro_command({"pipeline_names": ["__default__"], "env": "local"}) == "kedro run"


def test_runner_tag_is_a_class_name_not_an_object_address():
    assert _runner_name("<kedro.runner.sequential_runner.SequentialRunner object at 0x7f>") == (
        "SequentialRunner"
    )
    assert _runner_name("None") == "SequentialRunner"
