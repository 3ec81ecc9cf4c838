from __future__ import annotations

import pytest

from imagetrail.collector.references import InvalidReference, parse_reference, same_repository

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("alpine", "docker.io", "library/alpine", None, None),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("library/alpine", "docker.io", "library/alpine", None, None),
    ("docker.io/user/app:1", "docker.io", "user/app", "1", None),
    ("index.docker.io/user/app", "docker.io", "user/app", None, None),
    ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app", "1.0", None),
    ("localhost/app:dev", "localhost", "app", "dev", None),
    ("localhost:5000/a/b/c:x_y-z.1", "localhost:5000", "a/b/c", "x_y-z.1", None),
    ("myregistry.azurecr.io/team/app:1.4", "myregistry.azurecr.io", "team/app", "1.4", None),
    (f"ghcr.io/o/app@{D}", "ghcr.io", "o/app", None, D),
    (f"ghcr.io/o/app:1@{D}", "ghcr.io", "o/app", "1", D),
    ("Registry/app:1", "Registry", "app", "1", None),
])
def test_parse(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize("text", ["", "team/UPPER", "app@sha256:short", "a b", "app:-bad", " app",
                                  "x" * 2000])
def test_invalid(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_same_repository_normalises_docker_hub_names():
    assert same_repository("alpine", "docker.io/library/alpine:3")
    assert not same_repository("127.0.0.1:5000/a", "127.0.0.1:5001/a")
    assert not same_repository("UPPER/x", "upper/x")
