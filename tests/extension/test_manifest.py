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
    PHASE_INPUT,
    PHASES,
    REPO_ROOT,
    SHARED_TASK_FILES,
    TASK_NAME,
    decorator_steps,
    insertion_conditions,
    load_json,
    phase_of,
    task_dir,
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
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
JS_REQUIRE = re.compile(r"require\(\s*([^)]*?)\s*\)")


@pytest.fixture(scope="module")
def manifest():
    return load_json(REPO_ROOT / "vss-extension.json")


# --- task.json -------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_task_json_is_valid_against_the_official_schema(phase):
    schema = load_json(FIXTURES / "tasks.schema.json")
    jsonschema.Draft4Validator(schema).validate(task_json(phase))


def test_task_json_schema_check_can_fail():
    broken = copy.deepcopy(task_json("post-job"))
    broken["execution"]["Python3"] = {"target": "main.py"}  # Azure Pipelines has no Python handler
    errors = list(jsonschema.Draft4Validator(load_json(FIXTURES / "tasks.schema.json")).iter_errors(broken))
    assert any("Python3" in error.message for error in errors)


@pytest.mark.parametrize("phase", PHASES)
def test_task_uses_current_node_handlers_like_the_official_tasks(phase):
    task = task_json(phase)
    assert set(task["execution"]) == {"Node20_1", "Node24"}
    official = [load_json(FIXTURES / name) for name in ("DockerV2.task.json", "BashV3.task.json")]
    for handler, spec in task["execution"].items():
        assert all(handler in other["execution"] for other in official)
        assert (task_dir(phase) / spec["target"]).is_file()
        assert spec["target"].endswith(".js")
    # Node20_1 first shipped in agent 3.232.1 (azure-pipelines-tasks docs/migrateNode20.md).
    assert tuple(int(p) for p in task["minimumAgentVersion"].split(".")) >= (3, 232, 1)


@pytest.mark.parametrize("phase", PHASES)
def test_task_has_the_fields_official_tasks_have(phase):
    task = task_json(phase)
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
    assert task["name"] == TASK_NAME == task_dir(phase).name
    assert set(task["version"]) == {"Major", "Minor", "Patch"}


def test_task_inputs():
    inputs = {item["name"]: item for item in task_json()["inputs"]}
    # No backend URL or audience input: the build bakes them into the task folder, out of reach of pipeline
    # variables. The phase is an input with no default, so a step added by hand says which phase it is and the
    # decorators' phase guards can see it.
    assert set(inputs) == {PHASE_INPUT, "deadlineSeconds"}
    phase = inputs[PHASE_INPUT]
    assert phase["type"] == "pickList" and phase["required"] is True and "defaultValue" not in phase
    assert set(phase["options"]) == set(PHASES)
    assert int(inputs["deadlineSeconds"]["defaultValue"]) > 0


def test_one_task_serves_both_phases():
    """The agent downloads each task on its own, so two tasks could not share one copy of the collector:
    one task folder, one task contribution."""
    assert sorted(p.name for p in (REPO_ROOT / "tasks").iterdir()) == sorted(["shared", TASK_NAME])
    assert {task_dir(phase) for phase in PHASES} == {REPO_ROOT / "tasks" / TASK_NAME}


def test_task_entry_is_one_line_and_the_phase_comes_from_the_input():
    source = (task_dir() / "index.js").read_text(encoding="utf-8")
    code = [
        line for line in source.splitlines() if line.strip() and not line.startswith(("//", "'use strict'"))
    ]
    assert code == ["require('./task-entry.js').runTask();"]
    # Everything else comes from one place (tasks/shared/, shim/, src/, vendor/) at package time.
    assert sorted(p.name for p in task_dir().iterdir()) == ["index.js", "task.json"]
    entry = (SHARED_TASK_FILES / "task-entry.js").read_text(encoding="utf-8")
    assert f"input('{PHASE_INPUT}', env)" in entry


def test_shared_entry_script_has_no_dependencies():
    source = (SHARED_TASK_FILES / "task-entry.js").read_text(encoding="utf-8")
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    assert set(JS_REQUIRE.findall(code)) == {"'fs'", "'path'", "shimPath"}
    assert "path.join(root, 'collector-shim.js')" in source  # the shim packaged beside it, nothing outside
    assert sorted(p.name for p in SHARED_TASK_FILES.iterdir()) == ["icon.png", "task-entry.js"]
    assert not list(REPO_ROOT.glob("tasks/*/package.json"))
    assert not list(REPO_ROOT.glob("tasks/*/node_modules"))


# --- vss-extension.json ----------------------------------------------------------------------------


def test_one_task_contribution_points_at_the_task_folder(manifest):
    tasks = [c for c in manifest["contributions"] if c["type"] == "ms.vss-distributed-task.task"]
    assert len(tasks) == 1
    assert {REPO_ROOT / c["properties"]["name"] for c in tasks} == {task_dir()}
    assert [f for f in manifest["files"] if f["path"].startswith("tasks/")] == [{"path": f"tasks/{TASK_NAME}"}]
    for contribution in tasks:
        assert contribution["targets"] == ["ms.vss-distributed-task.tasks"]
        assert (REPO_ROOT / contribution["properties"]["name"] / "task.json").is_file()
        assert {"path": contribution["properties"]["name"]} in manifest["files"]


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
    for phase in PHASES:
        assert manifest["version"] == "{Major}.{Minor}.{Patch}".format(**task_json(phase)["version"])
    assert len(manifest["description"]) < 200  # tfx-cli's limit


# --- decorator templates ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", DECORATORS, ids=lambda p: p.name)
def test_decorator_injects_its_task_by_guid_with_safe_step_options(path):
    phase = phase_of(path)
    task = task_json(phase)
    steps = decorator_steps(path.read_text(encoding="utf-8"))
    assert len(steps) == 1
    step = steps[0]
    assert step["task"] == f"{task['id']}@{task['version']['Major']}"
    assert step["continueOnError"] is True
    assert 1 <= step["timeoutInMinutes"] <= 2
    assert step["target"] == "host"  # the host's Docker daemon, also in container jobs
    assert step["env"] == {"SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"}
    input_names = {item["name"] for item in task["inputs"]}
    assert set(step["inputs"]) <= input_names
    assert step["inputs"][PHASE_INPUT] == phase  # the one task learns its phase from its step
    # the step deadline fits in the step timeout
    assert int(step["inputs"]["deadlineSeconds"]) < step["timeoutInMinutes"] * 60
    # opt-out at runtime as well (a queue-time variable is not seen at injection time)
    assert "ne(variables['imagetrail.disable'], 'true')" in step["condition"]
    if phase == "post-job":
        assert step["condition"].startswith("and(always(),")  # images pushed before a failure still count


@pytest.mark.parametrize("path", DECORATORS, ids=lambda p: p.name)
def test_decorator_is_not_injected_twice_nor_when_opted_out(path):
    phase = phase_of(path)
    [condition] = insertion_conditions(path.read_text(encoding="utf-8"))
    assert f"not(containsValue(job.steps.*.inputs.{PHASE_INPUT}, '{phase}'))" in condition
    assert "ne(variables['imagetrail.disable'], 'true')" in condition


def test_each_decorator_guards_only_on_its_own_phase():
    """Whether the post-job decorator's job.steps lists the step the pre-job decorator injected is not
    documented. Both steps run the same task (same GUID), so a guard on the GUID could let the pre-job step
    keep the post-job report out; each guard names only its own phase, so the answer cannot matter."""
    task_id = task_json()["id"]
    assert GUID.fullmatch(task_id)
    for path in DECORATORS:
        phase = phase_of(path)
        text = path.read_text(encoding="utf-8")
        [condition] = insertion_conditions(text)
        assert "task.id" not in condition
        guarded = re.findall(rf"containsValue\(job\.steps\.\*\.inputs\.{PHASE_INPUT}, '([^']+)'\)", condition)
        assert guarded == [phase]
        other = next(p for p in PHASES if p != phase)
        assert f"'{other}'" not in text  # the other phase appears nowhere in it
        [step] = decorator_steps(text)
        assert step["task"].split("@")[0] == task_id


def pipelines_schema_with_our_tasks():
    """The Azure Pipelines YAML schema as an organisation with this extension installed serves it.

    The VS Code copy lists only Microsoft's built-in tasks (an organisation's schema adds its installed
    tasks, see microsoft/azure-pipelines-vscode issue #528), so our task's entry is added from
    its task.json the way the built-in ones are written (a pickList input as an enum, like Docker@2's command). It also lacks the `target` step property that
    the steps.task reference documents (issue #479), which is added from its own `stepTarget` definition.
    """
    schema = load_json(FIXTURES / "service-schema.json")
    definitions = schema["definitions"]
    for task in [task_json()]:
        major = task["version"]["Major"]
        inputs = {
            item["name"]: {"enum": list(item["options"])} if item["type"] == "pickList" else {"type": "string"}
            for item in task["inputs"]
        }
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
    return jsonschema.Draft7Validator(pipelines_schema_with_our_tasks())


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
    no_such_input = [dict(steps[0], inputs={**steps[0]["inputs"], "phase": "pre-job"})]
    assert not steps_validator.is_valid({"steps": no_such_input})
    without_phase = [dict(steps[0], inputs={"deadlineSeconds": "50"})]  # the phase input is required
    assert not steps_validator.is_valid({"steps": without_phase})
    other_phase = [dict(steps[0], inputs={**steps[0]["inputs"], PHASE_INPUT: "mid-job"})]
    assert not steps_validator.is_valid({"steps": other_phase})


def test_decorators_pass_no_backend_setting_a_pipeline_could_change():
    for path in DECORATORS:
        text = path.read_text(encoding="utf-8")
        step = decorator_steps(text)[0]
        assert set(step["inputs"]) == {PHASE_INPUT, "deadlineSeconds"}
        assert set(step["env"]) == {"SYSTEM_ACCESSTOKEN"}
        assert "imagetrail.url" not in text and "imagetrail.audience" not in text
        assert yaml.safe_load(text)["steps"]
