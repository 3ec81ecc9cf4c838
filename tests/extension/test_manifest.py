"""The extension manifest, the task manifest and the decorator templates, checked against the
official schemas (task-lib's tasks.schema.json, the Azure Pipelines YAML schema) and real manifests."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml

from tests.extension.support import (
    DECORATORS,
    FIXTURES,
    REPO_ROOT,
    TASK_DIR,
    decorator_steps,
    insertion_conditions,
    load_json,
    task_json,
)

PRE_JOB_TARGETS = {
    "ms.azure-pipelines-agent-job.pre-job-tasks",
    "ms.azure-release-pipelines-agent-job.pre-job-tasks",
}
POST_JOB_TARGETS = {
    "ms.azure-pipelines-agent-job.post-job-tasks",
    "ms.azure-release-pipelines-agent-job.post-job-tasks",
}


@pytest.fixture(scope="module")
def manifest():
    return load_json(REPO_ROOT / "vss-extension.json")


# --- task.json -------------------------------------------------------------------------------------


def test_task_json_is_valid_against_the_official_schema():
    schema = load_json(FIXTURES / "tasks.schema.json")
    jsonschema.Draft4Validator(schema).validate(task_json())


def test_task_json_schema_check_can_fail():
    broken = copy.deepcopy(task_json())
    broken["execution"]["Python3"] = {"target": "main.py"}  # Azure Pipelines has no Python handler
    errors = list(jsonschema.Draft4Validator(load_json(FIXTURES / "tasks.schema.json")).iter_errors(broken))
    assert any("Python3" in error.message for error in errors)


def test_task_uses_current_node_handlers_like_the_official_tasks():
    task = task_json()
    assert set(task["execution"]) == {"Node20_1", "Node24"}
    official = [load_json(FIXTURES / name) for name in ("DockerV2.task.json", "BashV3.task.json")]
    for handler, spec in task["execution"].items():
        assert all(handler in other["execution"] for other in official)
        assert (TASK_DIR / spec["target"]).is_file()
        assert spec["target"].endswith(".js")
    # Node20_1 first shipped in agent 3.232.1 (azure-pipelines-tasks docs/migrateNode20.md).
    assert tuple(int(p) for p in task["minimumAgentVersion"].split(".")) >= (3, 232, 1)


def test_task_has_the_fields_official_tasks_have():
    task = task_json()
    docker = load_json(FIXTURES / "DockerV2.task.json")
    for key in (
        "id",
        "name",
        "friendlyName",
        "description",
        "category",
        "visibility",
        "author",
        "version",
        "minimumAgentVersion",
        "instanceNameFormat",
        "inputs",
        "execution",
    ):
        assert key in docker and key in task, key
    assert len(task["friendlyName"]) <= 40  # tfx-cli's limit
    assert re.fullmatch(r"[A-Za-z0-9-]+", task["name"])
    assert set(task["version"]) == {"Major", "Minor", "Patch"}


def test_task_inputs():
    inputs = {item["name"]: item for item in task_json()["inputs"]}
    assert set(inputs) == {"phase", "backendUrl", "audience", "deadlineSeconds"}
    assert set(inputs["phase"]["options"]) == {"pre-job", "post-job"}
    assert int(inputs["deadlineSeconds"]["defaultValue"]) > 0


def test_entry_script_has_no_dependencies():
    source = (TASK_DIR / "index.js").read_text(encoding="utf-8")
    required = set(re.findall(r"require\(\s*['\"]([^'\"]+)['\"]\s*\)", source))
    assert required <= {"fs", "path"}, required
    assert not (TASK_DIR / "package.json").exists() and not (TASK_DIR / "node_modules").exists()


# --- vss-extension.json ----------------------------------------------------------------------------


def test_task_contribution_points_at_the_task_folder(manifest):
    tasks = [c for c in manifest["contributions"] if c["type"] == "ms.vss-distributed-task.task"]
    assert len(tasks) == 1
    assert tasks[0]["targets"] == ["ms.vss-distributed-task.tasks"]
    folder = REPO_ROOT / tasks[0]["properties"]["name"]
    assert (folder / "task.json").is_file() and folder == TASK_DIR
    assert {"path": tasks[0]["properties"]["name"]} in manifest["files"]


def test_decorators_cover_yaml_classic_build_and_classic_release_jobs(manifest):
    decorators = [
        c for c in manifest["contributions"] if c["type"] == "ms.azure-pipelines.pipeline-decorator"
    ]
    by_target = {target: c["properties"]["template"] for c in decorators for target in c["targets"]}
    assert set(by_target) == PRE_JOB_TARGETS | POST_JOB_TARGETS
    assert {by_target[t] for t in PRE_JOB_TARGETS} == {"decorators/pre-job.yml"}
    assert {by_target[t] for t in POST_JOB_TARGETS} == {"decorators/post-job.yml"}
    assert len({c["id"] for c in manifest["contributions"]}) == len(manifest["contributions"])


def test_decorator_templates_are_addressable_files_like_a_published_decorator_extension(manifest):
    example = load_json(FIXTURES / "devopsincanada-decorators.vss-extension.json")
    example_file_keys = {frozenset(entry) for entry in example["files"]}
    templates = {
        c["properties"]["template"]
        for c in manifest["contributions"]
        if c["type"] == "ms.azure-pipelines.pipeline-decorator"
    }
    for template in templates:
        entry = next(item for item in manifest["files"] if item["path"] == template)
        assert entry == {"path": template, "addressable": True, "contentType": "text/plain"}
        assert frozenset(entry) in example_file_keys
        assert (REPO_ROOT / template).is_file()
    example_contribution = next(
        c for c in example["contributions"] if c["type"] == "ms.azure-pipelines.pipeline-decorator"
    )
    for contribution in manifest["contributions"]:
        if contribution["type"] == "ms.azure-pipelines.pipeline-decorator":
            assert set(contribution) == set(example_contribution)


def test_manifest_basics(manifest):
    assert manifest["manifestVersion"] == 1
    assert manifest["targets"] == [{"id": "Microsoft.VisualStudio.Services"}]
    assert manifest["public"] is False  # only private extensions may contribute pipeline decorators
    assert manifest["scopes"] == []  # the job's own System.AccessToken is used; the extension needs no scope
    assert (REPO_ROOT / manifest["icons"]["default"]).is_file()
    assert manifest["version"] == "{Major}.{Minor}.{Patch}".format(**task_json()["version"])
    assert len(manifest["description"]) < 200  # tfx-cli's limit


# --- decorator templates ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", DECORATORS, ids=lambda p: p.name)
def test_decorator_injects_the_task_by_guid_with_safe_step_options(path):
    task = task_json()
    text = path.read_text(encoding="utf-8")
    steps = decorator_steps(text)
    assert len(steps) == 1
    step = steps[0]
    assert step["task"] == f"{task['id']}@{task['version']['Major']}"
    assert step["continueOnError"] is True
    assert 1 <= step["timeoutInMinutes"] <= 2
    assert step["target"] == "host"  # the host's Docker daemon, also in container jobs
    assert step["env"] == {"SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"}
    phase = "pre-job" if "pre-job" in path.name else "post-job"
    assert step["inputs"]["phase"] == phase
    input_names = {item["name"] for item in task["inputs"]}
    assert set(step["inputs"]) <= input_names
    # the step deadline fits in the step timeout
    assert int(step["inputs"]["deadlineSeconds"]) < step["timeoutInMinutes"] * 60
    # opt-out at runtime as well (a queue-time variable is not seen at injection time)
    assert "ne(variables['imagetrail.disable'], 'true')" in step["condition"]
    if phase == "post-job":
        assert step["condition"].startswith("and(always(),")  # images pushed before a failure still count


@pytest.mark.parametrize("path", DECORATORS, ids=lambda p: p.name)
def test_decorator_is_not_injected_twice_nor_when_opted_out(path):
    task_id = task_json()["id"]
    [condition] = insertion_conditions(path.read_text(encoding="utf-8"))
    assert f"not(containsValue(job.steps.*.task.id, '{task_id}'))" in condition
    assert "ne(variables['imagetrail.disable'], 'true')" in condition


def pipelines_schema_with_our_task():
    """The Azure Pipelines YAML schema as an organisation with this extension installed serves it.

    The VS Code copy lists only Microsoft's built-in tasks (an organisation's schema adds its installed
    tasks, see microsoft/azure-pipelines-vscode issue #528), so our task's entry is added from
    task.json the way the built-in ones are written. It also lacks the `target` step property that
    the steps.task reference documents (issue #479), which is added from its own `stepTarget` definition.
    """
    schema = load_json(FIXTURES / "service-schema.json")
    task = task_json()
    major = task["version"]["Major"]
    inputs = {item["name"]: {"type": "string"} for item in task["inputs"]}
    entry = {
        "properties": {
            "task": {"pattern": f"^({task['id']}|{task['name']})@{major}$"},
            "inputs": {
                "properties": inputs,
                "additionalProperties": False,
                "required": [item["name"] for item in task["inputs"] if item.get("required")],
            },
        },
        "required": ["task", "inputs"],
    }
    definitions = schema["definitions"]
    definitions["task"]["anyOf"].append(entry)
    definitions["task"]["properties"]["task"]["anyOf"].append(
        {"pattern": entry["properties"]["task"]["pattern"]}
    )
    assert "target" not in definitions["task"]["properties"]
    definitions["task"]["properties"]["target"] = {"$ref": "#/definitions/stepTarget"}
    return {
        "$schema": schema["$schema"],
        "$ref": "#/definitions/jobDecoratorSteps",
        "definitions": definitions,
    }


@pytest.fixture(scope="module")
def steps_validator():
    return jsonschema.Draft7Validator(pipelines_schema_with_our_task())


@pytest.mark.parametrize("path", DECORATORS, ids=lambda p: p.name)
def test_decorator_steps_are_valid_azure_pipelines_yaml(path, steps_validator):
    steps_validator.validate({"steps": decorator_steps(path.read_text(encoding="utf-8"))})


def test_decorator_steps_validation_can_fail(steps_validator):
    steps = decorator_steps(DECORATORS[1].read_text(encoding="utf-8"))
    misspelt = [dict(steps[0], continueOnErorr=True)]
    assert not steps_validator.is_valid({"steps": misspelt})
    unknown_input = [
        dict(steps[0], inputs={**steps[0]["inputs"], "backendURL": "x"})
    ]  # inputs are case-exact here
    assert not steps_validator.is_valid({"steps": unknown_input})


def test_decorators_are_plain_yaml_with_placeholders_for_the_build():
    for path in DECORATORS:
        step = decorator_steps(path.read_text(encoding="utf-8"))[0]
        assert step["inputs"]["backendUrl"] == "__IMAGETRAIL_BACKEND_URL__"
        assert step["inputs"]["audience"] == "__IMAGETRAIL_AUDIENCE__"
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["steps"]
