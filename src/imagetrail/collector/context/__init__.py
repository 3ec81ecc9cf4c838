"""Which CI system runs the job, and the pipeline context it gives."""

from __future__ import annotations

import importlib
from typing import Mapping, Optional

from imagetrail.report import PipelineContext


class UnsupportedEnvironment(Exception):
    """Neither Azure Pipelines nor GitHub Actions: there is no job to attribute pushes to."""


def detect_system(env: Mapping[str, str]) -> Optional[str]:
    if (env.get("TF_BUILD") or "").strip().lower() == "true":
        return "azure-devops"
    if (env.get("GITHUB_ACTIONS") or "").strip().lower() == "true":
        return "github"
    return None


def pipeline_context(env: Mapping[str, str]) -> PipelineContext:
    system = detect_system(env)
    if system == "azure-devops":
        from imagetrail.collector.context.azure_devops import azure_devops_context

        return azure_devops_context(env)
    if system == "github":
        # Imported lazily: the GitHub module is not needed on Azure agents.
        module = importlib.import_module("imagetrail.collector.context.github")
        return module.github_context(env)
    raise UnsupportedEnvironment(
        "not running in Azure Pipelines (TF_BUILD=True) or GitHub Actions (GITHUB_ACTIONS=true)"
    )
