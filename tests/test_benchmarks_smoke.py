"""Every benchmark runs at toy size and writes the JSON keys docs/performance.md relies on."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import benchmarks  # noqa: F401  (OpenMP policy; harmless once torch is loaded)
from benchmarks import (
    bayes_factors,
    flop_floor,
    gpu_check,
    memory,
    run_all,
    scale,
    scale_perturbseq,
    startup,
    streaming,
    vega_vs_scvi,
)
from benchmarks.common import write_result


def test_flop_floor_reports_a_ratio_per_model(tmp_path):
    result = flop_floor.run("toy")
    assert set(result["models"]) == {"tybalt", "vega", "gpo_vae"}
    for model in result["models"].values():
        assert model["ratio_to_floor"] > 0
        assert model["floor_flops_per_epoch"] == pytest.approx(
            3 * model["forward_matmul_flops_per_step"] * model["steps_per_epoch"]
        )
        assert len(model["rounds"]) == 2 and model["rounds"][0]["n_timed_steps"] >= 2
        assert model["bare_loop_ratio_to_floor"] > 0
        assert model["cpu_ratio_to_floor"] > 0 and model["bare_loop_cpu_ratio_to_floor"] > 0
        for round_ in model["rounds"]:  # CPU seconds of all threads: >0, and a rate per core
            assert round_["step_cpu_seconds_mean"] > 0
            assert round_["matmul_gflops_per_cpu_second"] > 0
    saved = json.loads(write_result("flop_floor", result, tmp_path).read_text())
    assert saved["machine"]["torch_threads"] >= 1 and saved["models"]["vega"]["meets_target"] in (
        True,
        False,
    )


def test_vega_vs_scvi_records_speed_and_reconstruction():
    result = vega_vs_scvi.run("toy")
    assert len(result["genevae_epoch_seconds"]) == vega_vs_scvi.SIZES["toy"].rounds
    assert all(error > 0 for error in result["genevae_reconstruction_error"])
    if result["scvi_available"]:
        assert result["speedup_median"] > 0
        assert result["reconstruction_error_ratio_genevae_over_scvi"] > 0
    else:
        assert "not installed" in result["note"]


def test_bayes_factors_agree_with_the_per_module_loop():
    result = bayes_factors.run("toy")
    agreement = result["agreement"]
    assert agreement["p_h1_identical"] and agreement["ln_bf_identical"]
    assert agreement["mean_diff_max_abs_difference"] < 1e-5
    assert agreement["n_modules_compared"] == bayes_factors.SIZES["toy"].n_modules
    assert result["library_seconds_median"] > 0 and result["encoding_floor_seconds"] > 0


def test_memory_reports_peaks_per_stage():
    result = memory.run("toy", in_process=True)
    assert set(result["stages"]) == {"preprocess", "preprocess_backed", "train"}
    train = result["stages"]["train"]
    assert train["n_batches"] == memory.SIZES["toy"].n_batches
    assert {"read", "train"} <= set(train["peak_rss_bytes_by_phase"])
    preprocess = result["stages"]["preprocess"]
    assert preprocess["output_shape"][0] < memory.SIZES["toy"].n_cells  # QC removed some cells
    assert preprocess["peak_over_sparse_size"] > 0
    assert result["stages"]["preprocess_backed"]["output_shape"] == preprocess["output_shape"]


def test_streaming_compares_training_from_disk_with_memory():
    result = streaming.run("toy")
    [round_] = result["rounds"]
    assert round_["memory_cells_per_s"] > 0 and round_["disk_cells_per_s"] > 0
    assert result["ratio_disk_over_memory"] == pytest.approx(
        round_["disk_cells_per_s"] / round_["memory_cells_per_s"]
    )
    assert result["loader_only"]["disk_batches_per_s"] > 0
    assert run_all.summary_rows("streaming", result)[0][:2] == (
        "streaming",
        "train cells/s: disk ÷ memory",
    )


def test_gpu_check_cpu_fallback_trains_every_model_and_passes_its_checks(tmp_path):
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path / "gpu.json")]) == 0
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["device"] == "cpu" and result["passed"]
    assert set(result["models"]) == {"vega", "gpo_vae", "tybalt"}
    for entry in result["models"].values():
        assert entry["samples_per_second"] > 0
        assert entry["timed_steps"] >= gpu_check.SIZES["cpu"].gpo_steps
        assert entry["encoding_check"]["max_relative_difference"] == 0.0  # CPU vs itself
    assert result["decoder"]["max_relative_difference"] <= gpu_check.DECODER_TOLERANCE
    assert result["bayes_factors"]["max_p_h1_difference"] == 0.0  # same generator on the CPU


def test_gpu_check_reports_a_failing_check_and_goes_on():
    def broken():
        raise RuntimeError("no kernel for this device")

    assert gpu_check._guarded(broken) == {
        "passed": False,
        "error": "RuntimeError: no kernel for this device",
    }


def test_scale_slopes_are_log_log_fits_over_the_nodes_seen_at_every_size():
    cells = [1000, 2000, 4000]
    runs = [
        {
            "vega.train_vega": {"wall_seconds": n / 100, "peak_rss_bytes": 1e6 * n**0.5},
            "vega.volcano_plots": {"wall_seconds": 3.0, "peak_rss_bytes": 5e8},
        }
        for n in cells
    ]
    runs[1]["vega.only_once"] = {"wall_seconds": 1.0, "peak_rss_bytes": 1.0}
    slopes = scale.slopes(cells, runs)
    assert set(slopes) == {"vega.train_vega", "vega.volcano_plots"}
    assert slopes["vega.train_vega"]["wall_seconds_slope"] == pytest.approx(1.0)
    assert slopes["vega.train_vega"]["peak_rss_bytes_slope"] == pytest.approx(0.5)
    assert slopes["vega.volcano_plots"]["wall_seconds_slope"] == pytest.approx(0.0, abs=1e-9)
    row = run_all.summary_rows("scale", {"ladders": {"scrna": {"slopes": slopes}}})[0]
    assert row[1] == "scrna: steepest node (wall): vega.train_vega" and row[2] == "1.00"


def test_scale_kind_command_runs_its_pipelines_for_the_named_dataset():
    kind = scale.kind("scrna")
    command = kind.command("scrna0", kind.ladders["toy"])
    assert command[command.index("--pipelines") + 1] == "data_processing,vega"
    assert command[command.index("--namespaces") + 1] == "data_processing.scrna0,vega.scrna0"
    assert command[command.index("--params") + 1] == "vega.scrna0.training.max_epochs=1"
    with pytest.raises(ValueError, match="kind must be one of"):
        scale.kind("nope")


def test_scale_results_merge_per_kind(tmp_path):
    path = tmp_path / "scale.json"
    path.write_text(json.dumps({"ladders": {"bulk": {"runs": [1]}, "scrna": {"runs": [1]}}}))
    merged = scale.merge_into(path, {"scale": "toy", "ladders": {"scrna": {"runs": [2]}}})
    assert merged["ladders"] == {"bulk": {"runs": [1]}, "scrna": {"runs": [2]}}


@pytest.mark.slow
def test_scale_toy_ladder_times_every_vega_node(tmp_path):
    assert scale.main(["--kind", "scrna", "--scale", "toy", "--results-dir", str(tmp_path)]) == 0
    ladder = json.loads((tmp_path / "scale.json").read_text())["ladders"]["scrna"]
    assert [run["n_cells"] for run in ladder["runs"]] == list(
        scale.kind("scrna").ladders["toy"].cells
    )
    for node in ("preprocess", "train_vega", "latent_maps", "differential_activity"):
        assert node in ladder["slopes"], node
    nodes = ladder["runs"][0]["nodes"].values()
    assert all(entry["peak_rss_bytes"] > 0 and entry["cpu_seconds"] >= 0 for entry in nodes)
    assert ladder["runs"][0]["nodes"]["train_vega"]["cpu_seconds"] > 0
    assert ladder["runs"][0]["data"]["nnz"] > 0


def test_scale_perturbseq_kind_runs_the_full_variant_with_cut_monte_carlo(tmp_path):
    kind = scale.kind("perturbseq")
    command = kind.command("perturbseq0", kind.ladders["toy"])
    assert "--namespaces" not in command
    outputs = command[command.index("--to-outputs") + 1].split(",")
    assert "gpo_vae.perturbseq0.full.predicted_ate" in outputs
    assert all(output.startswith("gpo_vae.perturbseq0.full.") for output in outputs)
    params = command[command.index("--params") + 1]
    assert "gpo_vae.perturbseq0.evaluation.n_particles=100" in params
    assert scale_perturbseq.screen_design(100_000, kind.ladders["full"].sizes) == (500, 10_000)
    assert scale_perturbseq.screen_design(12_500, kind.ladders["full"].sizes) == (62, 1_340)
    scale.make_project(tmp_path)
    config = kind.register(tmp_path, "perturbseq0", 150, kind.ladders["toy"])
    entry = config["datasets"]["perturbseq0"]
    assert entry["kind"] == "perturbseq" and entry["grn_reference"] == "grn_perturbseq0"
    assert config["facts"]["n_perturbations"] == 4 and config["facts"]["n_cells_written"] == 150
    edges = pd.read_csv(tmp_path / config["grn_references"]["grn_perturbseq0"]["file"])
    assert list(edges.columns[:2]) == ["source", "target"] and len(edges) == 4 * 3


@pytest.mark.slow
def test_scale_toy_perturbseq_ladder_times_the_gpo_vae_nodes(tmp_path):
    arguments = ["--kind", "perturbseq", "--scale", "toy", "--results-dir", str(tmp_path)]
    assert scale.main(arguments) == 0
    ladder = json.loads((tmp_path / "scale.json").read_text())["ladders"]["perturbseq"]
    assert [run["data"]["n_perturbations"] for run in ladder["runs"]] == [4, 8]
    for node in ("preprocess", "build_model_input", "train", "predict_ate", "test_iwelbo"):
        assert node in ladder["slopes"], node
    assert all(run["data"]["sparse_matrix_bytes"] > 0 for run in ladder["runs"])


def test_scale_bulk_registers_only_its_cohorts_and_runs_tybalt_and_its_evaluation(tmp_path):
    kind = scale.kind("bulk")
    ladder = kind.ladders["toy"]
    scale.make_project(tmp_path)
    config = kind.register(tmp_path, "bulk0", 40, ladder)
    entry = config["datasets"]["bulk0"]
    assert entry["kind"] == "bulk" and list(entry["cohorts"]) == ["BRCA", "GBM", "LUAD", "SKCM"]
    assert all((tmp_path / path).is_file() for path in entry["cohorts"].values())
    base = yaml.safe_load((tmp_path / "conf" / "base" / "datasets.yml").read_text())
    assert base["datasets"] == {} and base["gene_sets"]  # the evaluation scores bulk0 alone
    arithmetic = entry["tybalt"]["generation"]["arithmetic"][0]
    assert arithmetic["a"] == "GBM|Primary Solid Tumor" and arithmetic["c"].startswith("BRCA|")
    command = kind.command("bulk0", ladder)
    assert command[command.index("--pipelines") + 1] == "data_processing,tybalt,evaluation"
    namespaces = command[command.index("--namespaces") + 1]
    assert namespaces == "data_processing.bulk0,tybalt.bulk0,evaluation.tybalt"
    assert "tybalt.bulk0.training.max_epochs=1" in command[command.index("--params") + 1]


@pytest.mark.slow
def test_scale_bulk_toy_ladder_times_tybalt_and_the_evaluation(tmp_path):
    assert scale.main(["--kind", "bulk", "--scale", "toy", "--results-dir", str(tmp_path)]) == 0
    ladder = json.loads((tmp_path / "scale.json").read_text())["ladders"]["bulk"]
    assert [run["n_cells"] for run in ladder["runs"]] == list(
        scale.kind("bulk").ladders["toy"].cells
    )
    for node in ("combine_cohorts", "train_tybalt", "map_tybalt_latent_space"):
        assert node in ladder["slopes"], node
    assert "latent_and_reconstruction" in ladder["slopes"]  # evaluation.tybalt ran


def test_scale_labels_nodes_without_the_dataset_name():
    assert scale.node_label("vega.scale1.build_mask_scale1", "scale1") == "vega.build_mask"
    assert scale.node_label("build_mask_scale1", "scale1") == "build_mask"
    assert scale.node_label("vega.scale10.train_vega", "scale1") == "vega.scale10.train_vega"


def test_startup_times_the_first_node_line_and_profiles_imports():
    result = startup.run("toy")
    assert (
        0 < result["warm_seconds_to_first_loading"][0] <= result["median_seconds_to_running_node"]
    )
    assert result["imports"]["total_import_seconds"] > 0
    assert result["imports"]["self_seconds_by_package"]
    assert result["ratio_to_import_torch"] > 0 and result["warm_cpu_seconds_to_running_node"][0] > 0


def test_import_profile_ranks_top_level_imports():
    lines = [
        "import time: self [us] | cumulative | imported package\n",
        "import time:      1000 |       1000 |   numpy.core\n",
        "import time:     20000 |      21000 | numpy\n",
        "import time:       500 |        500 | json\n",
    ]
    profile = startup.import_profile(lines)
    assert profile["slowest_top_level_imports"][0] == {"module": "numpy", "seconds": 0.021}
    assert profile["self_seconds_by_package"][0] == {
        "package": "numpy",
        "seconds": 0.021,
        "first_imported_by": "numpy",
    }


def test_run_all_writes_json_and_a_table(tmp_path, monkeypatch):
    monkeypatch.setitem(run_all.BENCHMARKS, "startup", startup.run)
    assert (
        run_all.main(["--only", "startup", "--scale", "toy", "--results-dir", str(tmp_path)]) == 0
    )
    saved = json.loads((tmp_path / "startup.json").read_text())
    assert saved["benchmark"] == "startup" and "benchmark_seconds" in saved
    assert "startup" in run_all.format_table({"startup": saved})
