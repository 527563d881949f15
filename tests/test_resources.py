"""Tests for vertexkit.local.sizing: machine specs, custom-job wrapping at compile, local runs."""

import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler, dsl
from pydantic import BaseModel, ValidationError

from vertexkit.local.pipelines import PipelineError, for_environment, load_pipeline
from vertexkit.local.runner import run_local
from vertexkit.local.sizing import (
    PIPELINE_SERVICE_ACCOUNT,
    ResourcesError,
    active,
    bind_worker_images,
    check_components,
    components_in,
    sized,
)
from vertexkit.project.settings import ACCELERATOR_TYPES, ComponentName, ComponentResources

FIXTURE = Path(__file__).parent / "fixtures" / "resources"
LOCAL_IMAGE = "sized-base:python3.11"
GCPC_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0"
PUSHED = "us-central1-docker.pkg.dev/acme-ml-dev/sized-images/sized-base@sha256:" + "a" * 64
GPU = {
    "machine_type": "n1-highmem-8",
    "accelerator_type": "NVIDIA_TESLA_T4",
    "accelerator_count": 1,
    "replica_count": 2,
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VERTEXKIT__"):
            monkeypatch.delenv(name)


def compile_to(path: Path, pipeline: Any) -> dict[str, Any]:
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compiled(tmp_path: Path, mapping: dict | None = None, **options: Any) -> dict[str, Any]:
    """Import the fixture pipeline (inside ``active`` when given a mapping) and compile it."""
    if mapping is None:
        pipeline = load_pipeline(FIXTURE, "training")
    else:
        with active(mapping, **options):
            pipeline = load_pipeline(FIXTURE, "training")
    tmp_path.mkdir(parents=True, exist_ok=True)
    return compile_to(tmp_path / "training.yaml", pipeline)


def worker_pools(spec: dict[str, Any]) -> list[dict[str, Any]]:
    parameters = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    return parameters["worker_pool_specs"]["defaultValue"]


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


# --------------------------------------------------------------------------- ComponentResources


def test_defaults_are_one_standard_machine_without_accelerators() -> None:
    spec = ComponentResources()
    assert spec.model_dump() == {
        "machine_type": "n1-standard-4",
        "accelerator_type": None,
        "accelerator_count": 0,
        "replica_count": 1,
        "boot_disk_size_gb": None,
    }
    assert spec.wrapper_arguments() == {"machine_type": "n1-standard-4", "replica_count": 1}


def test_full_spec_and_its_wrapper_arguments() -> None:
    spec = ComponentResources(**GPU, boot_disk_size_gb=200)
    assert spec.wrapper_arguments() == {**GPU, "boot_disk_size_gb": 200}


def test_model_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        ComponentResources().machine_type = "n1-highmem-8"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"machine": "n1-highmem-8"}, "machine", "Extra inputs are not permitted"),
        ({"machine_type": "N1 Standard"}, "machine_type", "is not a machine type"),
        (
            {"accelerator_type": "NVIDIA_T4", "accelerator_count": 1},
            "accelerator_type",
            "'NVIDIA_T4' is not a Vertex AI accelerator type; did you mean 'NVIDIA_TESLA_T4'?",
        ),
        (
            {"accelerator_type": "NVIDIA_TESLA_T4"},
            "accelerator_count",
            "accelerator_type NVIDIA_TESLA_T4 needs accelerator_count of at least 1",
        ),
        (
            {"accelerator_count": 2},
            "accelerator_count",
            "accelerator_count 2 needs an accelerator_type",
        ),
        (
            {"accelerator_type": "NVIDIA_L4", "accelerator_count": -1},
            "accelerator_count",
            "greater than or equal to 0",
        ),
        ({"replica_count": 0}, "replica_count", "greater than or equal to 1"),
        ({"replica_count": "2"}, "replica_count", "valid integer"),
        ({"replica_count": True}, "replica_count", "valid integer"),
        ({"boot_disk_size_gb": 0}, "boot_disk_size_gb", "greater than or equal to 1"),
    ],
)
def test_invalid_values_name_the_field(values: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ComponentResources(**values)
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


@pytest.mark.parametrize(
    ("value", "meant"),
    [("nvidia_tesla_t4", "NVIDIA_TESLA_T4"), ("T4", "NVIDIA_TESLA_T4"), ("L4", "NVIDIA_L4")],
)
def test_accelerator_suggestions(value: str, meant: str) -> None:
    with pytest.raises(ValidationError, match=f"did you mean '{meant}'"):
        ComponentResources(accelerator_type=value, accelerator_count=1)


def test_accelerator_error_lists_valid_names() -> None:
    with pytest.raises(ValidationError) as caught:
        ComponentResources(accelerator_type="GTX_1080", accelerator_count=1)
    assert "(valid: NVIDIA_TESLA_P100, NVIDIA_TESLA_V100, " in str(caught.value)


def test_accelerator_types_are_vertex_ai_enum_names() -> None:
    from google.cloud.aiplatform_v1.types import AcceleratorType

    known = {item.name for item in AcceleratorType}
    assert set(ACCELERATOR_TYPES) <= known - {"ACCELERATOR_TYPE_UNSPECIFIED", "NVIDIA_TESLA_K80"}
    wanted = {"NVIDIA_TESLA_T4", "NVIDIA_L4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_A100"}
    wanted |= {"NVIDIA_A100_80GB", "NVIDIA_H100_80GB", "TPU_V2", "TPU_V3"}
    assert wanted <= set(ACCELERATOR_TYPES)


def test_service_account_placeholder_is_gcpc_s() -> None:
    from google_cloud_pipeline_components import _placeholders

    assert PIPELINE_SERVICE_ACCOUNT == _placeholders.SERVICE_ACCOUNT_PLACEHOLDER


class _Config(BaseModel):
    """The shape ProjectConfig gives the ``components`` section."""

    components: dict[ComponentName, ComponentResources] = {}


def test_config_keys_are_kfp_component_names() -> None:
    assert _Config.model_validate({"components": {"train-model": GPU}}).components == {
        "train-model": ComponentResources(**GPU)
    }
    with pytest.raises(ValidationError) as caught:
        _Config.model_validate({"components": {"train_model": {}}})
    (error,) = caught.value.errors()
    assert error["loc"] == ("components", "train_model", "[key]")
    assert "use 'train-model' (the component function's name, with '-' for '_')" in error["msg"]


def test_config_value_errors_point_into_the_entry() -> None:
    with pytest.raises(ValidationError) as caught:
        _Config.model_validate({"components": {"train-model": {"replica_count": 0}}})
    assert caught.value.errors()[0]["loc"] == ("components", "train-model", "replica_count")


# --------------------------------------------------------------------------- sized / active


@dsl.component(base_image=LOCAL_IMAGE, install_kfp_package=False)
def fit(rows: int) -> str:
    return str(rows)


@dsl.component(base_image=LOCAL_IMAGE, install_kfp_package=False)
def query(project: str, table: str) -> str:
    return f"{project}.{table}"


def test_sized_is_the_component_itself_outside_active() -> None:
    assert sized(fit) is fit


def test_sized_is_the_component_itself_when_not_configured() -> None:
    with active({"other": {}}) as sizing:
        assert sized(fit) is fit
    assert sizing.found == {"fit"}
    assert sizing.applied == set()


def test_sized_wraps_a_configured_component_as_a_custom_job() -> None:
    with active({"fit": GPU}) as sizing:
        wrapped = sized(fit)
    assert wrapped is not fit
    assert wrapped.component_spec.name == "fit"  # what the compiled pipeline names it by
    assert sizing.found == sizing.applied == {"fit"}
    executor = next(iter(wrapped.pipeline_spec.deployment_spec["executors"].values()))
    assert executor["container"]["image"] == GCPC_IMAGE
    assert sized(fit) is fit  # the activation ended with the block


def test_active_nests_and_restores() -> None:
    with active({"fit": GPU}):
        with active({}):
            assert sized(fit) is fit
        assert sized(fit) is not fit
    assert sized(fit) is fit


def test_default_sizes_every_sized_component() -> None:
    with active({}, default=ComponentResources()) as sizing:
        assert sized(fit) is not fit
    assert sizing.applied == {"fit"}


def test_active_rejects_bad_names_and_values() -> None:
    bad_name = pytest.raises(ResourcesError, match=r"components\.fit_model: 'fit_model' is not")
    with bad_name, active({"fit_model": {}}):
        pass
    with (
        pytest.raises(ValidationError, match="replica_count"),
        active({"fit": {"replica_count": 0}}),
    ):
        pass


def test_sized_rejects_inputs_the_wrapper_uses_even_locally() -> None:
    with pytest.raises(ResourcesError) as caught:
        sized(query)
    assert str(caught.value) == (
        "component 'query' cannot run as a custom job: rename its input(s) or output(s) "
        "project, which the custom-job wrapper uses itself"
    )


def test_sized_rejects_what_is_not_a_single_component() -> None:
    pipeline = load_pipeline(FIXTURE, "training")
    for thing in (pipeline, fit.python_func, "fit"):
        with pytest.raises(ResourcesError, match=r"^sized\(\) takes a component made with"):
            sized(thing)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- compiled pipelines


def test_compiled_without_resources_runs_the_plain_component(tmp_path: Path) -> None:
    spec = compiled(tmp_path)
    container = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert container["image"] == LOCAL_IMAGE
    assert container["args"] == [
        "--executor_input",
        "{{$}}",
        "--function_to_execute",
        "train_model",
    ]
    parameters = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"epochs"}


def test_compiled_with_resources_runs_a_custom_job(tmp_path: Path) -> None:
    plain = compiled(tmp_path / "plain")
    spec = compiled(tmp_path / "sized", {"train-model": GPU})

    container = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert container["image"] == GCPC_IMAGE
    assert container["command"] == [
        "python3",
        "-u",
        "-m",
        "google_cloud_pipeline_components.container.v1.custom_job.launcher",
    ]
    assert container["args"][:2] == ["--type", "CustomJob"]

    user = plain["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    inner = {
        "image_uri": LOCAL_IMAGE,  # the component's own image
        "command": user["command"],
        "args": [
            "--executor_input",
            "{{$.json_escape[1]}}",
            "--function_to_execute",
            "train_model",
        ],
        "env": [],
    }
    chief = {
        "container_spec": inner,
        "disk_spec": {"boot_disk_size_gb": 100, "boot_disk_type": "pd-ssd"},
        "machine_spec": {
            "machine_type": "n1-highmem-8",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 1,
        },
        "replica_count": 1,
    }
    # replica_count 2: the chief's pool and a second, identical pool of one worker.
    assert worker_pools(spec) == [chief, {**chief, "replica_count": 1}]

    parameters = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    assert parameters["display_name"]["defaultValue"] == "train-model"
    assert parameters["service_account"]["defaultValue"] == PIPELINE_SERVICE_ACCOUNT
    assert parameters["project"]["defaultValue"] == "{{$.pipeline_google_cloud_project_id}}"
    assert parameters["location"]["defaultValue"] == "{{$.pipeline_google_cloud_location}}"
    assert parameters["epochs"] == {"parameterType": "NUMBER_INTEGER"}
    outputs = spec["components"]["comp-train-model"]["outputDefinitions"]
    assert set(outputs["parameters"]) == {"Output", "gcp_resources"}
    assert set(outputs["artifacts"]) == {"model"}

    # Everything else is as without resources: the pipeline's inputs, its tasks and their
    # wiring, the other components.
    assert spec["root"] == plain["root"]
    for name in ("make-data", "describe"):
        assert spec["components"][f"comp-{name}"] == plain["components"][f"comp-{name}"]
        executor = f"exec-{name}"
        assert (
            spec["deploymentSpec"]["executors"][executor]
            == plain["deploymentSpec"]["executors"][executor]
        )


def test_larger_replica_counts_go_to_the_second_pool(tmp_path: Path) -> None:
    pools = worker_pools(compiled(tmp_path, {"train-model": {**GPU, "replica_count": 4}}))
    assert [pool["replica_count"] for pool in pools] == [1, 3]


def test_one_replica_without_accelerators(tmp_path: Path) -> None:
    spec = compiled(tmp_path, {"train-model": {"machine_type": "e2-standard-8"}})
    (pool,) = worker_pools(spec)
    assert pool["machine_spec"] == {"machine_type": "e2-standard-8"}
    assert pool["replica_count"] == 1


def test_boot_disk_and_service_account(tmp_path: Path) -> None:
    account = "sized-pipelines@acme-ml-dev.iam.gserviceaccount.com"
    spec = compiled(tmp_path, {"train-model": {"boot_disk_size_gb": 250}}, service_account=account)
    (pool,) = worker_pools(spec)
    assert pool["disk_spec"] == {"boot_disk_size_gb": 250, "boot_disk_type": "pd-ssd"}
    parameters = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    assert parameters["service_account"]["defaultValue"] == account


def test_pipeline_keeps_the_form_it_was_imported_in(tmp_path: Path) -> None:
    with active({"train-model": GPU}):
        sized_pipeline = load_pipeline(FIXTURE, "training")
    # Built at import: compiling after the block still gives the custom job ...
    spec = compile_to(tmp_path / "sized.yaml", sized_pipeline)
    assert worker_pools(spec)[0]["machine_spec"]["machine_type"] == "n1-highmem-8"
    # ... and every load imports the file again, so the next one is plain.
    plain = compile_to(tmp_path / "plain.yaml", load_pipeline(FIXTURE, "training"))
    assert (
        "worker_pool_specs"
        not in plain["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    )


def test_compiling_twice_gives_identical_bytes(tmp_path: Path) -> None:
    outputs = []
    for attempt in range(2):
        with active({"train-model": GPU}):
            pipeline = load_pipeline(FIXTURE, "training")
        target = tmp_path / f"{attempt}.yaml"
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(target))
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]
    reordered = dict(reversed(list(GPU.items())))
    with active({"train-model": reordered}):
        pipeline = load_pipeline(FIXTURE, "training")
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(tmp_path / "2.yaml"))
    assert (tmp_path / "2.yaml").read_bytes() == outputs[0]


def test_bind_worker_images_with_the_executor_images(tmp_path: Path) -> None:
    spec = compiled(tmp_path, {"train-model": GPU})
    assert bind_worker_images(spec, PUSHED) == 2
    for_environment(spec, image=PUSHED, enable_caching=False)
    assert [pool["container_spec"]["image_uri"] for pool in worker_pools(spec)] == [PUSHED] * 2
    # No local tag is left anywhere; gcpc's launcher image keeps its registry.
    assert LOCAL_IMAGE not in strings(spec)
    assert spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["image"] == (
        GCPC_IMAGE
    )
    assert bind_worker_images(spec, "other:tag") == 0  # registry-hosted images stay


def test_bind_worker_images_without_custom_jobs(tmp_path: Path) -> None:
    spec = compiled(tmp_path)
    assert bind_worker_images(spec, PUSHED) == 0


# --------------------------------------------------------------------------- check_components


def test_check_components_accepts_sized_names() -> None:
    check_components({"train-model": ComponentResources()}, {"train-model"})


def test_check_components_names_the_key_and_the_sized_components() -> None:
    with active({"trainmodel": GPU}) as sizing:
        pipeline = load_pipeline(FIXTURE, "training")
    with pytest.raises(ResourcesError) as caught:
        check_components(
            sizing.resources,
            sizing.found,
            used=components_in([pipeline]),
            source_of=lambda *path: "config/dev.yaml",
        )
    assert str(caught.value) == (
        "config/dev.yaml: components.trainmodel: no pipeline has a sized component named "
        "'trainmodel'; did you mean 'train-model'? (sized components: train-model)"
    )


def test_check_components_tells_used_but_not_sized() -> None:
    with active({"describe": GPU, "nope": {}}) as sizing:
        pipeline = load_pipeline(FIXTURE, "training")
    assert components_in([pipeline]) == {"make-data", "train-model", "describe"}
    with pytest.raises(ResourcesError) as caught:
        check_components(sizing.resources, sizing.found, used=components_in([pipeline]))
    assert str(caught.value).splitlines() == [
        "components.describe: component 'describe' is not wrapped with sized() in any "
        "pipeline: write sized(describe)(...) where the pipeline calls it "
        "(sized components: train-model)",
        "components.nope: no pipeline has a sized component named 'nope' "
        "(sized components: train-model)",
    ]


def test_check_components_without_any_sized_component() -> None:
    with pytest.raises(ResourcesError, match=r"\(sized components: none\)$"):
        check_components({"train-model": ComponentResources()}, set())


# --------------------------------------------------------------------------- pitfalls, local runs

SINGLE_OUTPUT = """
from kfp import dsl

from vertexkit.local.sizing import sized


@dsl.component(base_image="sized-base:python3.11", install_kfp_package=False)
def count(rows: int) -> int:
    return rows


@dsl.component(base_image="sized-base:python3.11", install_kfp_package=False)
def show(value: int) -> str:
    return str(value)


@dsl.pipeline(name="single")
def single(rows: int = 3) -> str:
    counted = sized(count)(rows=rows)
    return show(value=counted.output).output
"""


def test_dot_output_of_a_sized_component_breaks_once_wrapped(tmp_path: Path) -> None:
    """The wrapper adds the gcp_resources output: refer to outputs by name."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "single.py").write_text(SINGLE_OUTPUT)
    load_pipeline(tmp_path, "single")  # plain: fine
    with active({}, default=ComponentResources()), pytest.raises(PipelineError) as caught:
        load_pipeline(tmp_path, "single")
    assert "The task has multiple outputs" in str(caught.value)


def test_local_run_outside_active_runs_the_plain_component(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURE, project)
    # A compile for an environment earlier in the process leaves nothing behind.
    with active({"train-model": GPU}):
        load_pipeline(project, "training")

    run = run_local(project, "training", console=io.StringIO())
    assert [(task.name, task.status) for task in run.tasks] == [
        ("make-data", "SUCCESS"),
        ("train-model", "SUCCESS"),
        ("describe", "SUCCESS"),
    ]
    assert run.outputs == {"Output": "weights:8 (4 rows x 2 epochs)"}
