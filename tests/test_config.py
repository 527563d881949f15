"""Tests for vertexkit.project.config: base + overlay + environment variables, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vertexkit.project.config import ConfigError, PipelineConfig, environments, load_config

FIXTURE = Path(__file__).parent / "fixtures" / "project"

BASE = """\
name: demo
naming_prefix: demo
gcp:
  project_id: acme-ml-dev
  region: us-central1
parameters:
  shared_param: 1
pipelines:
  training:
    parameters:
      n: 3
      label: rows
local:
  output_dir: build/local
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture project (config/base.yaml + config/dev.yaml)."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    return root


def write_config(root: Path, base: str | None = BASE, **overlays: str) -> Path:
    config = root / "config"
    config.mkdir(parents=True, exist_ok=True)
    if base is not None:
        (config / "base.yaml").write_text(base, encoding="utf-8")
    for env, text in overlays.items():
        (config / f"{env}.yaml").write_text(text, encoding="utf-8")
    return root


def config_error(root: Path, env: str | None = None, environ: dict | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(root, env, environ={} if environ is None else environ)
    return str(caught.value)


# --------------------------------------------------------------------------- valid configs


def test_base_alone_is_the_local_environment(project: Path) -> None:
    config = load_config(project, environ={})
    assert config.environment == "local"
    assert config.name == "demo"
    assert config.naming_prefix == "demo"
    assert (config.gcp.project_id, config.gcp.region) == ("acme-ml-dev", "us-central1")
    assert config.parameters == {"shared_param": 1}
    assert config.pipelines["training"].parameters == {"n": 3, "label": "rows", "ratio": 1}
    assert config.pipelines["training"].enable_caching is False
    assert config.local.output_dir == "build/local"


def test_defaults_for_optional_sections(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "name: demo\nnaming_prefix: demo\ngcp:\n  project_id: acme-ml-dev\n  region: us-east1\n",
    )
    config = load_config(tmp_path, environ={})
    assert config.parameters == {}
    assert config.pipelines == {}
    assert config.local.output_dir == "build/local"
    # A pipeline without an entry gets the defaults.
    assert config.pipeline("anything") == PipelineConfig()
    assert config.pipeline("anything").enable_caching is False


def test_overlay_is_deep_merged(project: Path) -> None:
    config = load_config(project, "dev", environ={})
    assert config.environment == "dev"
    assert config.gcp.region == "europe-west4"  # from dev.yaml
    assert config.gcp.project_id == "acme-ml-dev"  # kept from base.yaml
    training = config.pipelines["training"]
    assert training.enable_caching is True  # from dev.yaml
    # n replaced by dev.yaml, label and ratio kept from base.yaml
    assert training.parameters == {"n": 5, "label": "rows", "ratio": 1}
    assert config.parameters == {"shared_param": 1}


def test_environment_variables_override_with_typed_scalars(project: Path) -> None:
    environ = {
        "VERTEXKIT__GCP__REGION": "asia-east1",
        "VERTEXKIT__PIPELINES__TRAINING__ENABLE_CACHING": "true",
        "VERTEXKIT__PIPELINES__TRAINING__PARAMETERS__N": "7",
        "VERTEXKIT__PARAMETERS__SHARED_PARAM": "2.5",
        "VERTEXKIT__LOCAL__OUTPUT_DIR": "/tmp/elsewhere",
        # Not ours: ignored.
        "VERTEXKIT_SINGLE_UNDERSCORE": "x",
        "HOME": "/root",
    }
    config = load_config(project, "dev", environ=environ)
    assert config.gcp.region == "asia-east1"  # env var beats dev.yaml
    assert config.pipelines["training"].enable_caching is True
    n = config.pipelines["training"].parameters["n"]
    assert n == 7 and type(n) is int
    shared = config.parameters["shared_param"]
    assert shared == 2.5 and type(shared) is float
    assert config.local.output_dir == "/tmp/elsewhere"
    assert config.pipelines["training"].parameters["label"] == "rows"  # untouched


def test_environment_variable_that_is_not_yaml_is_kept_as_text(project: Path) -> None:
    config = load_config(project, environ={"VERTEXKIT__NAME": "a: b: c"})
    assert config.name == "a: b: c"


def test_environment_variable_can_add_a_pipeline_entry(project: Path) -> None:
    config = load_config(project, environ={"VERTEXKIT__PIPELINES__SCORING__PARAMETERS__K": "4"})
    assert config.pipelines["scoring"].parameters == {"k": 4}
    assert config.pipelines["training"].parameters["n"] == 3
    source = "environment variable VERTEXKIT__PIPELINES__SCORING__PARAMETERS__K"
    assert config.source_of("pipelines", "scoring", "parameters", "k") == source


def test_os_environ_is_the_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERTEXKIT__GCP__REGION", "us-west1")
    assert load_config(project).gcp.region == "us-west1"


def test_source_of_names_base_overlay_and_variable(project: Path) -> None:
    environ = {"VERTEXKIT__PIPELINES__TRAINING__PARAMETERS__LABEL": "lines"}
    config = load_config(project, "dev", environ=environ)
    assert config.source_of("gcp", "project_id") == "config/base.yaml"
    assert config.source_of("gcp", "region") == "config/dev.yaml"
    assert config.source_of("pipelines", "training", "enable_caching") == "config/dev.yaml"
    assert config.source_of("pipelines", "training", "parameters", "n") == "config/dev.yaml"
    assert config.source_of("pipelines", "training", "parameters", "ratio") == "config/base.yaml"
    assert (
        config.source_of("pipelines", "training", "parameters", "label")
        == "environment variable VERTEXKIT__PIPELINES__TRAINING__PARAMETERS__LABEL"
    )
    assert config.source_of("parameters", "shared_param") == "config/base.yaml"
    # A field nobody set falls back to the nearest section, then to base.yaml.
    assert config.source_of("pipelines", "training", "parameters", "seed") == "config/base.yaml"
    assert config.source_of("local", "output_dir") == "config/base.yaml"


def test_source_of_without_overlay_is_base(project: Path) -> None:
    config = load_config(project, environ={})
    assert config.source_of("gcp", "region") == "config/base.yaml"


def test_pipeline_parameters_filters_shared_ones(project: Path) -> None:
    config = load_config(project, environ={})
    declared = {"n", "shared_param", "label", "ratio"}
    assert config.pipeline_parameters("training", declared) == {
        "shared_param": 1,
        "n": 3,
        "label": "rows",
        "ratio": 1,
    }
    # A pipeline that does not declare the shared parameter does not get it.
    assert config.pipeline_parameters("other", {"x"}) == {}
    assert config.pipeline_parameters("other", {"shared_param"}) == {"shared_param": 1}


def test_pipeline_parameters_win_over_shared_ones(project: Path) -> None:
    environ = {"VERTEXKIT__PIPELINES__TRAINING__PARAMETERS__SHARED_PARAM": "9"}
    config = load_config(project, environ=environ)
    assert config.parameters["shared_param"] == 1
    assert config.pipeline_parameters("training", {"shared_param"})["shared_param"] == 9


def test_environments_lists_overlays_only(project: Path) -> None:
    (project / "config" / "staging.yaml").write_text("{}\n")
    (project / "config" / "notes.txt").write_text("not an overlay\n")
    assert environments(project) == ["dev", "staging"]


def test_environments_of_a_folder_without_config(tmp_path: Path) -> None:
    assert environments(tmp_path) == []


def test_empty_overlay_changes_nothing(project: Path) -> None:
    (project / "config" / "qa.yaml").write_text("# nothing yet\n")
    config = load_config(project, "qa", environ={})
    assert config.environment == "qa"
    assert config.model_dump() == load_config(project, environ={}).model_dump()


def test_config_is_frozen(project: Path) -> None:
    config = load_config(project, environ={})
    with pytest.raises(ValueError, match="frozen"):
        config.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- invalid configs


def test_missing_base_yaml(tmp_path: Path) -> None:
    message = config_error(tmp_path)
    assert "config/base.yaml not found" in message
    assert str(tmp_path) in message
    assert "not a vertexkit project" in message


def test_bad_project_id(tmp_path: Path) -> None:
    write_config(tmp_path, BASE.replace("acme-ml-dev", "Acme_ML"))
    message = config_error(tmp_path)
    assert "config/base.yaml: gcp.project_id: 'Acme_ML' is not a valid project id" in message
    assert "6 to 30 characters" in message


def test_bad_project_id_from_overlay_names_the_overlay(tmp_path: Path) -> None:
    write_config(tmp_path, dev="gcp:\n  project_id: x1\n")
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: gcp.project_id: 'x1' is not a valid project id" in message
    assert "config/base.yaml" not in message


def test_bad_region_from_overlay(tmp_path: Path) -> None:
    write_config(tmp_path, dev="gcp:\n  region: us-central9\n")
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: gcp.region: 'us-central9' is not a Vertex AI Pipelines region" in (
        message
    )
    assert "us-central1" in message  # lists the valid regions


def test_bad_region_from_environment_variable(tmp_path: Path) -> None:
    write_config(tmp_path)
    message = config_error(tmp_path, environ={"VERTEXKIT__GCP__REGION": "mars-north1"})
    assert (
        "environment variable VERTEXKIT__GCP__REGION: gcp.region: 'mars-north1' is not a "
        "Vertex AI Pipelines region" in message
    )


def test_unknown_top_level_key_suggests_the_nearest(tmp_path: Path) -> None:
    write_config(tmp_path, BASE.replace("naming_prefix:", "naming_prefx:"))
    message = config_error(tmp_path)
    assert (
        "config/base.yaml: naming_prefx: unknown setting 'naming_prefx'; "
        "did you mean 'naming_prefix'?" in message
    )
    assert (
        "(valid: ci, components, endpoints, gcp, kfp, local, monitoring, name, naming_prefix, "
        "orchestrator, parameters, pipelines, provisioning, resources, scheduler, secrets, service)"
        in message
    )
    # ... and the real key is then missing.
    assert "config/base.yaml: naming_prefix: required setting is missing" in message
    assert message.startswith("invalid configuration (2 problems):")


def test_unknown_nested_key_in_local_section(tmp_path: Path) -> None:
    write_config(tmp_path, dev="local:\n  output_dr: elsewhere\n")
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: local.output_dr: unknown setting 'output_dr'" in message
    assert "did you mean 'output_dir'?" in message


def test_unknown_key_in_a_pipeline_entry(tmp_path: Path) -> None:
    write_config(tmp_path, dev="pipelines:\n  training:\n    paramters:\n      n: 4\n")
    message = config_error(tmp_path, "dev")
    assert message.startswith("invalid configuration (1 problem):")
    assert "config/dev.yaml: pipelines.training.paramters: unknown setting 'paramters'" in message


def test_unknown_key_in_a_pipeline_entry_gets_a_suggestion(tmp_path: Path) -> None:
    write_config(tmp_path, dev="pipelines:\n  training:\n    paramters:\n      n: 4\n")
    message = config_error(tmp_path, "dev")
    assert "did you mean 'parameters'?" in message
    assert "(valid: enable_caching, parameter_rules, parameters, schedule)" in message


def test_unknown_key_from_environment_variable(tmp_path: Path) -> None:
    write_config(tmp_path)
    message = config_error(tmp_path, environ={"VERTEXKIT__GCP__ZONE": "us-central1-a"})
    assert "environment variable VERTEXKIT__GCP__ZONE: gcp.zone: unknown setting 'zone'" in (
        message
    )
    assert "(valid: project_id, region)" in message


def test_wrong_type_for_enable_caching(tmp_path: Path) -> None:
    write_config(tmp_path, dev='pipelines:\n  training:\n    enable_caching: "maybe"\n')
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: pipelines.training.enable_caching:" in message
    assert "valid boolean" in message


def test_wrong_type_for_a_section(tmp_path: Path) -> None:
    write_config(tmp_path, BASE.replace("local:\n  output_dir: build/local\n", "local: yes\n"))
    message = config_error(tmp_path)
    assert "config/base.yaml: local:" in message


def test_missing_gcp_section(tmp_path: Path) -> None:
    text = BASE.replace("gcp:\n  project_id: acme-ml-dev\n  region: us-central1\n", "")
    write_config(tmp_path, text)
    message = config_error(tmp_path)
    assert message == (
        "invalid configuration (1 problem):\n  config/base.yaml: gcp: required setting is missing"
    )


def test_missing_field_inside_gcp(tmp_path: Path) -> None:
    write_config(tmp_path, BASE.replace("  region: us-central1\n", ""))
    assert "config/base.yaml: gcp.region: required setting is missing" in config_error(tmp_path)


def test_naming_prefix_too_long(tmp_path: Path) -> None:
    prefix = "a" * 21
    write_config(tmp_path, BASE.replace("naming_prefix: demo", f"naming_prefix: {prefix}"))
    message = config_error(tmp_path)
    assert f"config/base.yaml: naming_prefix: '{prefix}' is too long" in message
    assert "use at most 20 characters" in message


def test_naming_prefix_of_twenty_characters_is_accepted(tmp_path: Path) -> None:
    prefix = "a" * 20
    write_config(tmp_path, BASE.replace("naming_prefix: demo", f"naming_prefix: {prefix}"))
    assert load_config(tmp_path, environ={}).naming_prefix == prefix


@pytest.mark.parametrize("prefix", ["Demo", "demo_x", "demo-", "9demo", "demo--x"])
def test_naming_prefix_with_bad_characters(tmp_path: Path, prefix: str) -> None:
    write_config(tmp_path, dev=f"naming_prefix: {prefix}\n")
    message = config_error(tmp_path, "dev")
    assert f"config/dev.yaml: naming_prefix: '{prefix}' is not a valid naming prefix" in message


@pytest.mark.parametrize(
    ("prefix", "fragment"),
    [('"on"', "'on' reads as a boolean in YAML"), ("ml-google", "'ml-google' contains 'google'")],
)
def test_naming_prefix_the_questions_refuse(tmp_path: Path, prefix: str, fragment: str) -> None:
    """Quoted or not, the configuration holds the prefix to the copier question's rule."""
    write_config(tmp_path, dev=f"naming_prefix: {prefix}\n")
    assert f"config/dev.yaml: naming_prefix: {fragment}" in config_error(tmp_path, "dev")


def test_project_id_with_google_is_refused(tmp_path: Path) -> None:
    write_config(tmp_path, dev="gcp:\n  project_id: my-google-ml\n")
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: gcp.project_id: 'my-google-ml' contains 'google'" in message


def test_naming_prefix_from_environment_variable(tmp_path: Path) -> None:
    write_config(tmp_path)
    message = config_error(tmp_path, environ={"VERTEXKIT__NAMING_PREFIX": "Bad_Prefix"})
    assert (
        "environment variable VERTEXKIT__NAMING_PREFIX: naming_prefix: 'Bad_Prefix' is not a "
        "valid naming prefix" in message
    )


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    write_config(tmp_path, "name: demo\nnaming_prefix: demo\ngcp:\n  project_id: acme: ml\n")
    message = config_error(tmp_path)
    assert message == (
        "config/base.yaml: invalid YAML (line 4, column 19): mapping values are not allowed here"
    )


def test_invalid_yaml_in_overlay_names_the_overlay(tmp_path: Path) -> None:
    write_config(tmp_path, dev="gcp:\n  region: [us-east1\nname: x\n")
    message = config_error(tmp_path, "dev")
    assert message.startswith("config/dev.yaml: invalid YAML (line 3,")


def test_top_level_list_instead_of_mapping(tmp_path: Path) -> None:
    write_config(tmp_path, "- name: demo\n- naming_prefix: demo\n")
    assert config_error(tmp_path) == "config/base.yaml: expected a mapping of settings, got list"


def test_overlay_that_is_a_scalar(tmp_path: Path) -> None:
    write_config(tmp_path, dev="just text\n")
    assert config_error(tmp_path, "dev") == (
        "config/dev.yaml: expected a mapping of settings, got str"
    )


def test_unknown_environment_lists_available_ones(tmp_path: Path) -> None:
    write_config(tmp_path, dev="{}\n", prod="{}\n")
    message = config_error(tmp_path, "qa")
    assert message == "unknown environment 'qa': no config/qa.yaml (available: dev, prod)"


def test_unknown_environment_without_overlays(tmp_path: Path) -> None:
    write_config(tmp_path)
    assert "(available: none)" in config_error(tmp_path, "dev")


def test_bad_parameter_name(tmp_path: Path) -> None:
    write_config(tmp_path, BASE.replace("  shared_param: 1", "  Shared-Param: 1"))
    message = config_error(tmp_path)
    assert (
        "config/base.yaml: parameters.Shared-Param: 'Shared-Param' is not a valid parameter name"
        in message
    )


def test_bad_parameter_name_in_a_pipeline_entry(tmp_path: Path) -> None:
    write_config(tmp_path, dev="pipelines:\n  training:\n    parameters:\n      2n: 4\n")
    message = config_error(tmp_path, "dev")
    assert (
        "config/dev.yaml: pipelines.training.parameters.2n: '2n' is not a valid parameter name"
        in (message)
    )


def test_bad_pipeline_name(tmp_path: Path) -> None:
    write_config(tmp_path, dev="pipelines:\n  Scoring: {}\n")
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: pipelines.Scoring: 'Scoring' is not a valid pipeline name" in message


def test_bad_pipeline_name_in_base(tmp_path: Path) -> None:
    write_config(tmp_path, BASE.replace("  training:", "  Training:"))
    message = config_error(tmp_path)
    assert (
        "config/base.yaml: pipelines.Training: 'Training' is not a valid pipeline name" in message
    )


def test_empty_name(tmp_path: Path) -> None:
    write_config(tmp_path, dev='name: ""\n')
    assert "config/dev.yaml: name:" in config_error(tmp_path, "dev")


def test_empty_environment_variable_section(tmp_path: Path) -> None:
    write_config(tmp_path)
    message = config_error(tmp_path, environ={"VERTEXKIT__GCP____REGION": "us-east1"})
    assert message == "environment variable VERTEXKIT__GCP____REGION: empty section name"


def test_every_problem_is_listed(tmp_path: Path) -> None:
    write_config(tmp_path, "name: demo\n")
    message = config_error(tmp_path)
    assert message.splitlines() == [
        "invalid configuration (2 problems):",
        "  config/base.yaml: naming_prefix: required setting is missing",
        "  config/base.yaml: gcp: required setting is missing",
    ]


def test_empty_base_yaml(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    message = config_error(tmp_path)
    assert message.startswith("invalid configuration (3 problems):")
    assert "config/base.yaml: name: required setting is missing" in message


# --------------------------------------------------------------------------- parameter_rules


def test_parameter_rules_are_read(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        dev="pipelines:\n  training:\n    parameter_rules:\n"
        "      test_fraction: {gt: 0, lt: 1}\n      metric: {choices: [auc, f1]}\n",
    )
    rules = load_config(tmp_path, "dev", environ={}).pipeline("training").parameter_rules
    assert rules["test_fraction"].describe() == "> 0 and < 1"
    assert rules["metric"].allows("f1") and not rules["metric"].allows("acc")
    assert rules["test_fraction"].allows(0.5) and not rules["test_fraction"].allows(1)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{ge: 5, le: 1}", "no value satisfies >= 5 and <= 1"),
        ("{gt: 1, lt: 1}", "no value satisfies > 1 and < 1"),
        ("{ge: 0, gt: 0}", "give ge or gt, not both"),
        ("{}", "give bounds (ge, gt, le, lt) or choices"),
        ("{min: 0}", "unknown setting 'min'"),
        ("{ge: '0'}", "ge"),
        ("{choices: []}", "choices"),
    ],
)
def test_invalid_parameter_rules_name_file_and_field(
    tmp_path: Path, rule: str, problem: str
) -> None:
    write_config(tmp_path, dev=f"pipelines:\n  training:\n    parameter_rules:\n      n: {rule}\n")
    message = config_error(tmp_path, "dev")
    assert "config/dev.yaml: pipelines.training.parameter_rules.n" in message
    assert problem in message


def test_service_settings_are_checked_naming_the_field(tmp_path: Path) -> None:
    write_config(tmp_path, BASE + "service:\n  kind: app-engine\n  max_body_bytes: 10\n")
    message = config_error(tmp_path)
    assert "config/base.yaml: service.kind: Input should be 'cloud-run'" in message
    assert (
        "config/base.yaml: service.max_body_bytes: Input should be greater than or equal to 1024"
        in message
    )
