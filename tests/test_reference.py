"""The one reference and digest grammar (imagetrail.reference), row by row, against what Docker's
distribution/reference (ParseNormalizedNamed) makes of the same text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imagetrail.reference import (
    DIGEST_RE,
    InvalidReference,
    is_digest,
    normalize_registry,
    parse_reference,
    registry_and_repository,
    running_digest,
    same_repository,
    short_digest,
)

D = "sha256:" + "a" * 64
E = "sha256:" + "0123456789abcdef" * 4
SCHEMA = Path(__file__).resolve().parents[1] / "src" / "imagetrail" / "schemas" / "report-v1.schema.json"


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    # Docker Hub: short names, library/, docker.io and its legacy hosts
    ("nginx", "docker.io", "library/nginx", None, None),
    ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
    ("library/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("index.docker.io/nginx", "docker.io", "library/nginx", None, None),
    ("index.docker.io/user/app:2", "docker.io", "user/app", "2", None),
    ("registry-1.docker.io/user/app", "docker.io", "user/app", None, None),
    ("user/app", "docker.io", "user/app", None, None),
    ("a/b/c", "docker.io", "a/b/c", None, None),
    # registries with ports, IP addresses, localhost
    ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app", "1.0", None),
    ("myreg:5000/app", "myreg:5000", "app", None, None),
    ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
    ("localhost/app:dev", "localhost", "app", "dev", None),
    ("localhost:5000/a/b/c:x_y-z.1", "localhost:5000", "a/b/c", "x_y-z.1", None),
    ("localhost", "docker.io", "library/localhost", None, None),  # no '/': a Hub name, as in Docker
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # likewise: name:tag
    ("myregistry.azurecr.io/team/app:1.4", "myregistry.azurecr.io", "team/app", "1.4", None),
    # a registry host is case-insensitive: accepted and lower-cased
    ("MyReg.AzureCR.io/team/app:1", "myreg.azurecr.io", "team/app", "1", None),
    ("Registry/app:1", "registry", "app", "1", None),  # upper case: a host, as in Docker
    ("Index.Docker.IO/nginx", "docker.io", "library/nginx", None, None),
    # separators Docker allows inside a path component; tags keep their case
    ("ghcr.io/o/my_app__x.y--z:V1.0_RC-2", "ghcr.io", "o/my_app__x.y--z", "V1.0_RC-2", None),
    # digests, alone and with a tag
    (f"ghcr.io/o/app@{D}", "ghcr.io", "o/app", None, D),
    (f"ghcr.io/o/app:1@{E}", "ghcr.io", "o/app", "1", E),
    (f"nginx:1.27@{D}", "docker.io", "library/nginx", "1.27", D),
    (f"localhost:5000/app@{D}", "localhost:5000", "app", None, D),
])
def test_parse(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.name == f"{registry}/{repository}"
    if text != "Registry/app:1":  # lower-cased, a dotless host reads as a Hub namespace (see the module)
        assert parse_reference(str(ref)) == ref  # the normalised form parses to itself


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    (" nginx", "spaces around"),
    ("nginx\n", "spaces around"),
    ("x" * 600, "too long"),
    ("a/" + "b" * 260, "longer than 255"),
    ("a" * 64, "image id"),
    # path components are lower case: rejected, never lower-cased
    ("myreg.io/Team/App:1", "repository 'Team/App' in 'myreg.io/Team/App:1' must be lower case"),
    ("Registry/App:1", "repository 'App' in 'Registry/App:1' must be lower case"),
    ("NGINX", "repository 'library/NGINX' in 'NGINX' must be lower case"),
    ("team/UPPER", "must be lower case"),
    # bad digests
    ("app@sha256:short", "digest 'sha256:short'"),
    (f"app@{D.upper()}", "not sha256:<64 lower-case hex>"),
    ("app@sha512:" + "a" * 128, "digest"),
    ("app@", "digest ''"),
    # bad tags
    ("app:-bad", "tag '-bad'"),
    ("app:.bad", "tag '.bad'"),
    ("app:" + "t" * 129, "tag"),
    ("app:", "tag ''"),
    ("app:t\u00e9", "tag"),
    # bad paths and hosts
    ("a b", "repository"),
    ("a//b", "repository"),
    ("a/-b", "repository"),
    ("a___b", "repository"),
    ("reg.io/", "repository"),
    ("-reg.io/app", "registry '-reg.io'"),
    ("reg.io:port/app", "registry"),
])
def test_invalid(text, message):
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_normalize_registry():
    assert normalize_registry(" Index.Docker.io ") == "docker.io"
    assert normalize_registry("registry-1.docker.io") == "docker.io"
    assert normalize_registry("MyReg.AzureCR.io:443") == "myreg.azurecr.io:443"
    assert normalize_registry("localhost:5000") == "localhost:5000"


def test_same_repository_normalises_docker_hub_names():
    assert same_repository("alpine", "docker.io/library/alpine:3")
    assert same_repository("index.docker.io/library/alpine", f"alpine@{D}")
    assert not same_repository("127.0.0.1:5000/a", "127.0.0.1:5001/a")
    assert not same_repository("UPPER/x", "upper/x")  # a host, then a Hub namespace
    assert not same_repository("Team/App", "Team/App")  # invalid is never the same


def test_registry_and_repository_keeps_text_it_cannot_parse():
    assert registry_and_repository("nginx:1") == ("docker.io", "library/nginx")
    assert registry_and_repository("myreg.io/Team/App:1") == ("", "myreg.io/Team/App:1")


def test_digest_helpers():
    assert is_digest(D) and is_digest(E)
    for bad in (None, "", D.upper(), D[:-1], D + "0", "sha512:" + "a" * 64, "a" * 64, 7):
        assert not is_digest(bad), bad
    assert short_digest(E) == "sha256:0123456789ab"
    assert short_digest("not a digest") == "not a digest"


def test_the_report_schema_uses_the_same_digest_pattern():
    """The JSON schema cannot import Python: its digest patterns must be this module's, character for character."""
    text = SCHEMA.read_text(encoding="utf-8")
    patterns = set(re.findall(r'"pattern": "(\^sha256[^"]*)"', text))
    assert patterns == {DIGEST_RE.pattern}
    json.loads(text)


@pytest.mark.parametrize("image_id, spec, digest", [
    (f"docker-pullable://nginx@{D}", "nginx", D),
    (f"ghcr.io/o/app@{E.upper().replace('SHA256', 'sha256')}", "", E),
    ("", f"nginx@{D}", D),
    (f"sha256:{'b' * 64}", f"nginx:1@{D}", D),  # a config id: the pinned spec digest is what runs
])
def test_running_digest(image_id, spec, digest):
    assert running_digest(image_id, spec) == (digest, None)


def test_running_digest_explains_what_it_cannot_use():
    assert "config id" in running_digest(f"docker://sha256:{'b' * 64}", "Bad/Spec")[1]
    assert "no imageID" in running_digest(None, "nginx")[1]
    assert "not sha256" in running_digest("nginx@sha256:zz", "")[1]
