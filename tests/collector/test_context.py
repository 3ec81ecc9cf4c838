"""Azure Pipelines context parsing, and what hostile values turn into."""

from __future__ import annotations

import io

import pytest

from imagetrail.collector.console import Console
from imagetrail.collector.context import UnsupportedEnvironment, pipeline_context
from imagetrail.collector.context.azure_devops import azure_devops_context, organization_name
from imagetrail.report import Report
from tests.collector.support import azure_env, validate


@pytest.mark.parametrize("uri, name", [
    ("https://dev.azure.com/contoso/", "contoso"),
    ("https://dev.azure.com/contoso", "contoso"),
    ("https://contoso.visualstudio.com/", "contoso"),
    ("https://tfs.example.com/tfs/DefaultCollection/", "DefaultCollection"),
    ("http://ado-server:8080/Fabrikam/", "Fabrikam"),
    ("https://tfs.example.com/", None),
])
def test_organization_name_from_collection_uri(uri, name):
    assert organization_name(uri) == name


def test_build_context_maps_every_variable(tmp_path):
    env = azure_env(tmp_path, SYSTEM_TEAMPROJECT="My Shop")
    ctx = azure_devops_context(env)
    assert ctx.system == "azure-devops"
    assert ctx.server_url == "https://dev.azure.com/contoso/"
    assert (ctx.organization.id, ctx.organization.name) == (env["SYSTEM_COLLECTIONID"], "contoso")
    assert (ctx.project.id, ctx.project.name) == (env["SYSTEM_TEAMPROJECTID"], "My Shop")
    assert (ctx.pipeline.id, ctx.pipeline.name) == ("17", "shop-ci")
    assert ctx.run.id == env["BUILD_BUILDID"] and ctx.run.number == "20260101.3" and ctx.run.attempt is None
    assert ctx.run.url == (f"https://dev.azure.com/contoso/{env['SYSTEM_TEAMPROJECTID']}"
                           f"/_build/results?buildId={env['BUILD_BUILDID']}")
    assert ctx.run.reason == "IndividualCI"
    assert (ctx.job.id, ctx.job.name, ctx.job.attempt, ctx.job.stage) == (
        env["SYSTEM_JOBID"], "Build image", 1, "Build")
    assert ctx.repository.type == "TfsGit" and ctx.repository.branch == "refs/heads/main"
    assert ctx.repository.commit == env["BUILD_SOURCEVERSION"]
    requester = ctx.requester
    assert (requester.id, requester.name, requester.email) == ("ada-id", "Ada Lovelace", "ada@example.com")
    assert (ctx.agent.name, ctx.agent.os, ctx.agent.host_type) == ("Hosted Agent", "Linux", "build")


def test_classic_release_context(tmp_path):
    env = azure_env(tmp_path, SYSTEM_HOSTTYPE="release", RELEASE_DEFINITIONID="4",
                    RELEASE_DEFINITIONNAME="shop-cd", RELEASE_RELEASEID="88",
                    RELEASE_RELEASENAME="Release-88", RELEASE_ATTEMPTNUMBER="2",
                    RELEASE_REQUESTEDFOR="Grace Hopper", RELEASE_REQUESTEDFORID="grace-id",
                    RELEASE_DEPLOYMENT_REQUESTEDFOR="Deployer", RELEASE_DEPLOYMENT_REQUESTEDFORID="dep-id",
                    SYSTEM_COLLECTIONURI="", SYSTEM_TEAMFOUNDATIONCOLLECTIONURI="https://contoso.visualstudio.com/")
    ctx = azure_devops_context(env)
    assert (ctx.pipeline.id, ctx.pipeline.name) == ("4", "shop-cd")
    assert (ctx.run.id, ctx.run.number, ctx.run.attempt) == ("88", "Release-88", 2)
    assert ctx.run.url.startswith("https://contoso.visualstudio.com/")
    assert ctx.run.url.endswith("releaseId=88")
    assert (ctx.requester.id, ctx.requester.name) == ("dep-id", "Deployer")
    assert ctx.organization.name == "contoso" and ctx.agent.host_type == "release"


def test_missing_values_are_none_never_invented():
    ctx = azure_devops_context({"TF_BUILD": "True"})
    assert ctx.organization.name is None and ctx.run.url is None and ctx.job.attempt is None
    assert ctx.repository.commit is None and ctx.requester.email is None


def test_hostile_values_are_bounded_and_cannot_forge_commands(tmp_path):
    forged = "main\n##vso[task.setvariable variable=x]evil\r\n::error::boom\x00\x1b[31m"
    env = azure_env(tmp_path, BUILD_SOURCEBRANCH=forged, SYSTEM_JOBDISPLAYNAME="j" * 100_000,
                    SYSTEM_JOBATTEMPT="1; rm -rf /", BUILD_BUILDID="12 OR 1=1",
                    SYSTEM_COLLECTIONURI="javascript:alert(1)//dev.azure.com/x/")
    ctx = azure_devops_context(env)
    assert not {"\n", "\r", "\x00"} & set(ctx.repository.branch)
    assert len(ctx.job.name) <= 500
    assert ctx.job.attempt is None and ctx.run.url is None and ctx.server_url is None
    validate(Report(context=ctx, pushes=[]).to_dict())
    out = io.StringIO()
    console = Console(env, out=out, err=out)
    console.warning(f"branch {ctx.repository.branch}")
    console.info(forged)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all("##vso[task.setvariable" not in line for line in lines)
    assert lines[0].startswith("##vso[task.logissue type=warning]ImageTrail: ")
    assert lines[0].count("##vso[") == 1 and lines[1].count("##vso[") == 0


def test_system_selection(tmp_path):
    assert pipeline_context({"TF_BUILD": "True"}).system == "azure-devops"
    with pytest.raises(UnsupportedEnvironment):
        pipeline_context({})
    github = pipeline_context({"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "octo/shop",
                               "GITHUB_RUN_ID": "5"})
    assert github.system == "github" and github.project.name == "octo/shop"
