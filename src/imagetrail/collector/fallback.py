"""Keeping a report that could not be delivered, so that nothing pushed is lost.

Azure Pipelines: the file is attached to the run (``task.addattachment`` with type
``imagetrail.report``), where the backend's reconcile finds it later. GitHub Actions: the
report is uploaded as a workflow artifact ``imagetrail-report-<hex>`` (see ``gh_artifact``),
where reconcile finds it with a GitHub token, and appended to the job summary in a collapsed
block. Elsewhere: the file stays in the collector's temp directory and its path is printed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping

from imagetrail.collector.console import Console
from imagetrail.collector.state import base_dir, write_json_atomically

ATTACHMENT_TYPE = "imagetrail.report"


def _command_data(text: str) -> str:
    # Azure logging command data escaping (agent: '%' -> %AZP25, CR -> %0D, LF -> %0A).
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def keep_report(body: Dict[str, Any], env: Mapping[str, str], console: Console) -> str:
    """Write the report where it survives the job; return a short phrase saying where it went.
    Raises OSError when even that is impossible (the caller says so in its warning)."""
    hex_id = str(body.get("reportId", "")).split(":", 1)[-1][:32] or "unknown"
    name = f"report-{hex_id}.json"
    directory = base_dir(env)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, name)
    write_json_atomically(path, body)
    if console.azure:
        console.command(f"##vso[task.addattachment type={ATTACHMENT_TYPE};name={name}]{_command_data(path)}")
        return f"the report was kept at {path} and attached to the run as {ATTACHMENT_TYPE}"
    if console.github:
        return _keep_on_github(body, env, path, name, hex_id)
    return f"the report was kept at {path}"


def _keep_on_github(body: Dict[str, Any], env: Mapping[str, str], path: str, name: str, hex_id: str) -> str:
    places, problem = [f"at {path}"], ""
    from imagetrail.collector import gh_artifact

    if gh_artifact.available(env):
        try:
            with open(path, "rb") as handle:
                artifact = gh_artifact.upload_report(env, hex_id, name, handle.read())
            places.append(f"as workflow artifact {artifact}")
        except gh_artifact.ArtifactError as exc:
            problem = f" (uploading the workflow artifact failed: {exc})"
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(
                "\n<details><summary>ImageTrail report (not delivered)</summary>\n\n```json\n"
                + json.dumps(body, indent=2, sort_keys=True).replace("```", "` ` `")
                + "\n```\n\n</details>\n"
            )
        places.append("in the job summary")
    return "the report was kept " + ", ".join(places) + problem
