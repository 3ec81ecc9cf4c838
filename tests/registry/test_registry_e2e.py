"""End to end: a real registry notifying a real `imagetrail serve`, images pushed by clients that bypass
the Docker engine (buildah, podman, skopeo) and by the engine, traced from what the registry and the
images themselves say."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from tests.registry.support import USERS, Containers, cli, create_key, notifying_registry
from tests.server.reports import ado_report, body, github_report, push
from tests.support.live_server import free_port, running_server

pytestmark = pytest.mark.e2e

DOCKER_AT_2_LABELS = {
    "com.azure.dev.image.build.builduri": "vstfs:///Build/Build/345",
    "com.azure.dev.image.build.buildnumber": "20240601.345",
    "com.azure.dev.image.build.definitionname": "web-ci",
    "com.azure.dev.image.build.repository.uri": "https://dev.azure.com/contoso/Web/_git/web",
    "com.azure.dev.image.build.repository.name": "web",
    "com.azure.dev.image.build.sourcebranchname": "main",
    "com.azure.dev.image.build.sourceversion": "a" * 40,
    "com.azure.dev.image.system.teamfoundationcollectionuri": "https://dev.azure.com/contoso/",
    "com.azure.dev.image.system.teamproject": "Web",
}


class Stack:
    def __init__(self, url: str, registry: str, admin: str, database_url: str, directory: Path):
        self.url, self.registry, self.database_url = url, registry, database_url
        self.headers = {"Authorization": f"Bearer {admin}"}
        self.env = {"IMAGETRAIL_URL": url, "IMAGETRAIL_API_KEY": admin}
        self.tools = Containers(directory / "containers")
        self.repo_prefix = f"registry-e2e-{uuid.uuid4().hex[:8]}"

    def report(self, report) -> None:
        answer = requests.post(self.url + "/v1/reports", json=body(report), headers=self.headers, timeout=30)
        assert answer.status_code == 201, answer.text

    def trail(self, reference: str) -> dict:
        answer = requests.get(self.url + "/v1/trail", params={"reference": reference}, headers=self.headers,
                              timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_for(self, what: str, probe: Callable[[], object], timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


@pytest.fixture
def stack(database_url, tmp_path) -> Iterator[Stack]:
    port = free_port()
    registry = f"127.0.0.1:{port}"
    with running_server(database_url, env={"IMAGETRAIL_REGISTRIES": f"{registry},127.0.0.1:5000",
                                           "IMAGETRAIL_REGISTRY_AUTH_FILE": str(tmp_path / "server-auth.json")}) as url:
        admin = create_key(database_url, "*", "admin")
        registry_key = create_key(database_url, "*", "registry")
        # The server reads the registry as a least-privilege user of its own.
        import base64
        (tmp_path / "server-auth.json").write_text(json.dumps({"auths": {registry: {
            "auth": base64.b64encode(f"bob:{USERS['bob']}".encode()).decode()}}}))
        with notifying_registry(tmp_path / "registry", port, f"{url}/v1/registry-events", registry_key):
            stack = Stack(url, registry, admin, database_url, tmp_path)
            try:
                yield stack
            finally:
                stack.tools.close()


def test_buildah_push_with_docker_at_2_labels_joins_that_run(stack):
    stack.report(ado_report(job="Publish"))  # run 345 of contoso/Web/web-ci is known
    image = stack.tools.buildah_image("labelled", DOCKER_AT_2_LABELS)
    reference = f"{stack.registry}/{stack.repo_prefix}/labelled:1.0"
    started = time.monotonic()
    digest = stack.tools.push("buildah", image, reference, "alice")
    pushed = stack.wait_for("the registry event", lambda: stack.trail(reference)["registry_pushes"])
    assert time.monotonic() - started < 5, "a registry push must be traceable within 5 s"
    assert pushed[0]["digest"] == digest and pushed[0]["actor"] == "alice" and pushed[0]["tag"] == "1.0"
    claims = stack.wait_for("the labels", lambda: stack.trail(reference)["claims"])
    [claim] = claims
    assert (claim["kind"], claim["evidence"]) == ("azure-pipelines-labels", "claimed")
    assert claim["facts"]["organization"] == "contoso" and claim["facts"]["run_id"] == "345"
    [run] = claim["runs"]
    assert (run["matched_by"], run["organization"], run["project"], run["run_id"], run["pipeline"]) == (
        "run", "contoso", "Web", "345", "web-ci")
    assert run["run_url"] == "https://dev.azure.com/contoso/Web/_build/results?buildId=345"
    gaps = requests.get(stack.url + "/v1/coverage/untraced-pushes", params={"registry": stack.registry},
                        headers=stack.headers, timeout=30).json()
    assert digest not in [p["digest"] for p in gaps["pushes"]]
    human = cli("trace", reference, env=stack.env)
    assert human.returncode == 0, human.stderr
    assert "(reported by the registry only)" in human.stdout and "pushed by  alice from 127.0.0.1:" in human.stdout
    assert "azure-pipelines-labels (claimed" in human.stdout
    assert "contoso / Web / web-ci run 20240601.345 (by run)" in human.stdout


def test_podman_push_with_oci_labels_names_repository_and_commit(stack, tmp_path):
    stack.report(github_report())  # a run of octo-org/app at commit b*40 is known
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text("podman\n")
    (context / "Containerfile").write_text(
        "FROM scratch\nCOPY hello.txt /hello.txt\n"
        "LABEL org.opencontainers.image.source=https://github.com/octo-org/app "
        f"org.opencontainers.image.revision={'b' * 40} org.opencontainers.image.created=2026-11-30T06:00:00Z\n")
    stack.tools.run("podman", "build", "--isolation", "chroot", "-t", "localhost/oci-labelled", str(context))
    reference = f"{stack.registry}/{stack.repo_prefix}/oci-labelled:2.0"
    stack.tools.push("podman", "localhost/oci-labelled", reference, "bob")
    [claim] = stack.wait_for("the OCI labels", lambda: stack.trail(reference)["claims"])
    assert claim["kind"] == "oci-labels" and claim["evidence"] == "claimed"
    assert (claim["facts"]["repository_uri"], claim["facts"]["commit"]) == ("https://github.com/octo-org/app", "b" * 40)
    [run] = claim["runs"]
    assert (run["matched_by"], run["organization"], run["run_id"], run["commit"]) == (
        "commit", "octo-org", "9001", "b" * 40)
    traced = json.loads(cli("trace", reference, "--json", env=stack.env).stdout)
    assert traced["claims"][0]["facts"]["commit"] == "b" * 40


def test_skopeo_promotion_keeps_the_trail(stack, registry):
    image = stack.tools.buildah_image("promoted", {})
    source = f"{registry}/{stack.repo_prefix}/promoted:3.0"
    digest = stack.tools.push("buildah", image, source, "alice")  # the shared registry ignores credentials
    stack.report(ado_report(run_id="777", pushes=[push(source, digest)]))  # the collector traced it there
    target = f"{stack.registry}/{stack.repo_prefix}/prod:3.0"
    stack.tools.run("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds",
                    f"alice:{USERS['alice']}", f"docker://{source}", f"docker://{target}")
    trail = stack.wait_for("the promoted reference", lambda: (lambda t: t if t["pushes"] else None)(stack.trail(target)))
    assert trail["digest"] == digest
    assert [(p["reference"], p["run"]["id"]) for p in trail["pushes"]] == [(source, "777")]
    assert [(p["registry"], p["tag"]) for p in trail["registry_pushes"]] == [(stack.registry, "3.0")]
    assert [(p["reference"], p["run"]["id"]) for p in stack.trail(source)["pushes"]] == [(source, "777")]


def test_unlabelled_buildah_push_is_an_untraced_push_with_its_actor(stack):
    image = stack.tools.buildah_image("unlabelled", {})
    reference = f"{stack.registry}/{stack.repo_prefix}/unlabelled:4.0"
    digest = stack.tools.push("buildah", image, reference, "alice")

    def gap():
        page = requests.get(stack.url + "/v1/coverage/untraced-pushes", params={"registry": stack.registry},
                            headers=stack.headers, timeout=30).json()
        return [p for p in page["pushes"] if p["digest"] == digest and p["attribution"] == "done"]

    [found] = stack.wait_for("the untraced push, read from the registry", gap)
    assert (found["repository"], found["tag"], found["actor"]) == (f"{stack.repo_prefix}/unlabelled", "4.0", "alice")
    assert found["source_addr"].startswith("127.0.0.1:")
    shown = cli("query", "--gaps", env=stack.env)
    assert shown.returncode == 0, shown.stderr
    assert f"{stack.repo_prefix}/unlabelled" in shown.stdout and "alice" in shown.stdout


def test_docker_push_and_its_registry_event_are_one_push_with_two_sources(stack, docker_engine, tmp_path):
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"DOCKER_CONFIG": str(config), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    reference = f"{stack.registry}/{stack.repo_prefix}/engine:5.0"
    subprocess.run(["docker", "login", "-u", "alice", "--password-stdin", stack.registry], input=USERS["alice"],
                   env=env, check=True, capture_output=True, text=True, timeout=60)
    tarball = subprocess.run(["tar", "-c", "-C", str(Path(__file__).parent), "__init__.py"], capture_output=True,
                             check=True).stdout
    subprocess.run(["docker", "import", "-", reference], input=tarball, env=env, check=True, capture_output=True,
                   timeout=120)
    try:
        out = subprocess.run(["docker", "push", reference], env=env, check=True, capture_output=True, text=True,
                             timeout=300).stdout
        digest = "sha256:" + out.split("digest: sha256:")[1].split()[0]
        stack.report(ado_report(run_id="888", pushes=[push(reference, digest)]))
        def joined():
            pushes = stack.trail(reference)["pushes"]
            return pushes if pushes and pushes[0]["sources"] == ["collector", "registry"] else None
        [one] = stack.wait_for("the registry event joined to the collector push", joined)
        assert one["run"]["id"] == "888" and one["registry_events"][0]["actor"] == "alice"
        assert stack.trail(reference)["registry_pushes"] == []
    finally:
        subprocess.run(["docker", "rmi", reference], env=env, capture_output=True, timeout=60)


RUN_URL = "https://github.com/octo-org/app/actions/runs/9001/attempts/1"


def test_buildkit_provenance_in_the_index_joins_the_github_run(stack, tmp_path):
    from tests.registry.oci import Content, github_provenance

    stack.report(github_report())  # run 9001 of octo-org/app is known
    content = Content()
    image, _ = content.image("provenance")
    attestation = content.attestation(image, github_provenance(image["digest"], "v0.2", RUN_URL, "octo-org/app",
                                                               "b" * 40))
    index = content.index([image, attestation])
    layout = tmp_path / "layout"
    content.write_layout(layout, "5.0", index)
    reference = f"{stack.registry}/{stack.repo_prefix}/provenance:5.0"
    stack.tools.run("skopeo", "copy", "--all", "--dest-tls-verify=false", "--dest-creds", f"bob:{USERS['bob']}",
                    f"oci:{layout}:5.0", f"docker://{reference}")
    claims = stack.wait_for("the provenance", lambda: [c for c in stack.trail(reference)["claims"]
                                                        if c["kind"] == "slsa-provenance"])
    [claim] = claims
    assert claim["evidence"] == "claimed" and claim["source"] == f"attestation {attestation['digest']}"
    facts = claim["facts"]
    assert (facts["builder_id"], facts["repository_uri"], facts["commit"]) == (
        RUN_URL, "https://github.com/octo-org/app.git", "b" * 40)
    [run] = claim["runs"]
    assert (run["matched_by"], run["system"], run["organization"], run["run_id"]) == ("run", "github", "octo-org", "9001")


def test_sigstore_bundle_found_through_the_referrers_fallback_tag(stack):
    from tests.registry.oci import OCI_INDEX, OCI_MANIFEST, Content, github_provenance

    content = Content()
    image, image_manifest = content.image("referred")
    referrer, referrer_manifest = content.sigstore_referrer(
        image, github_provenance(image["digest"], "v1", RUN_URL, "octo-org/app", "d" * 40))
    fallback = content.index([referrer])
    repository = f"{stack.repo_prefix}/referred"
    # Distribution 2.8 has no referrers API: clients keep the OCI fallback tag sha256-<hex> up to date.
    content.upload(stack.registry, repository, ("bob", USERS["bob"]), [
        (referrer["digest"], referrer_manifest, OCI_MANIFEST),
        (image["digest"].replace(":", "-"), fallback, OCI_INDEX),
        ("6.0", image_manifest, OCI_MANIFEST)])
    reference = f"{stack.registry}/{repository}:6.0"
    [claim] = stack.wait_for("the attestation", lambda: stack.trail(reference)["claims"])
    assert claim["kind"] == "slsa-provenance" and claim["evidence"] == "claimed"
    assert claim["facts"]["predicate_type"] == "https://slsa.dev/provenance/v1"
    assert claim["facts"]["commit"] == "d" * 40 and claim["facts"]["run_id"] == "9001"
    # The fallback tag is an attachment, not an image push.
    assert [p["tag"] for p in stack.trail(reference)["registry_pushes"]] == ["6.0"]


def test_registry_sync_posts_new_pushes_incrementally_and_resumes(stack, tmp_path):
    import base64
    import os
    import pty

    from tests.registry.support import notifying_registry

    port = free_port()
    quiet = f"127.0.0.1:{port}"  # a registry with no webhooks
    docker_config = tmp_path / "sync-docker"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"auths": {quiet: {
        "auth": base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()}}}))
    state = tmp_path / "sync-state.json"
    env = {**stack.env, "DOCKER_CONFIG": str(docker_config)}
    with notifying_registry(tmp_path / "quiet", port, None):
        image = stack.tools.buildah_image("synced", {})
        first = stack.tools.push("buildah", image, f"{quiet}/team/one:1", "alice")
        stack.tools.push("buildah", image, f"{quiet}/team/two:1", "alice")
        synced = cli("registry", "sync", "--registry", quiet, "--state", str(state), env=env)
        assert synced.returncode == 0, synced.stderr
        assert "2 repositories, 2 tags, 2 new or changed pushes" in synced.stdout
        assert synced.stderr == ""  # no progress bar when stderr is not a terminal
        page = requests.get(stack.url + "/v1/coverage/untraced-pushes", params={"registry": quiet},
                            headers=stack.headers, timeout=30).json()
        assert sorted(p["repository"] for p in page["pushes"]) == ["team/one", "team/two"]
        assert all(p["user_agent"].startswith("imagetrail-registry-sync/") for p in page["pushes"])
        again = cli("registry", "sync", "--registry", quiet, "--state", str(state), env=env)
        assert "0 new or changed" in again.stdout
        stack.tools.push("buildah", stack.tools.buildah_image("synced-2", {}), f"{quiet}/team/one:2", "alice")
        # An interrupted walk resumes after the last repository it finished (team/one): only team/two is read.
        saved = json.loads(state.read_text())
        saved[quiet]["catalog_after"] = "team/one"
        state.write_text(json.dumps(saved))
        resumed = cli("registry", "sync", "--registry", quiet, "--state", str(state), env=env)
        assert "1 repositories, 1 tags, 0 new" in resumed.stdout
        # On a terminal, a progress bar; one repository only with --repository.
        leader, follower = pty.openpty()
        process = subprocess.Popen([*cli_argv(), "registry", "sync", "--registry", quiet, "--repository", "team/one",
                                    "--state", str(state)], env={**os.environ, **env}, stdout=subprocess.PIPE,
                                   stderr=follower, text=True)
        out, _ = process.communicate(timeout=120)
        os.close(follower)
        bar = os.read(leader, 65536).decode()
        os.close(leader)
        assert process.returncode == 0 and "1 repositories, 2 tags, 1 new" in out
        assert "\r[" in bar and "1/1" in bar
    trail = stack.trail(f"{quiet}/team/one:1")
    # The same image was pushed to both repositories: the trail of its digest shows both pushes.
    assert sorted((p["repository"], p["tag"], p["digest"]) for p in trail["registry_pushes"]) == [
        ("team/one", "1", first), ("team/two", "1", first)]


def cli_argv():
    import sys
    return [sys.executable, "-m", "imagetrail"]
