"""Unit tests: the lean client's response parser and the reference history from image events."""

from __future__ import annotations

import pytest

from imagetrail.collector.docker_events import parse_response
from imagetrail.collector.events import PushedImage, PushEvent, ReferenceHistory

IMAGE_A = "sha256:" + "a" * 64
IMAGE_B = "sha256:" + "b" * 64


def test_plain_chunked_and_sized_answers():
    assert parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\n") == \
        (200, b'{"a":1}\n')
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
    assert parse_response(chunked) == (200, b"abcde")
    sized = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope and more"
    assert parse_response(sized) == (404, b"nope")


@pytest.mark.parametrize("raw", [b"", b"garbage", b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"])
def test_what_is_not_an_answer_is_refused(raw):
    with pytest.raises(ValueError):
        parse_response(raw)


def _event(action: str, actor_id: str, t: int, name: str = "") -> dict:
    return {"Type": "image", "Action": action, "Actor": {"ID": actor_id, "Attributes": {"name": name}},
            "timeNano": t}


def _push(reference: str, t: int) -> PushEvent:
    return PushEvent(reference=reference, time_ns=t)


def test_history_names_the_pushed_image_and_later_changes():
    history = ReferenceHistory([
        _event("tag", IMAGE_A, 10, "127.0.0.1:5000/team/app:1"),
        _event("push", "127.0.0.1:5000/team/app:1", 20),
        _event("tag", IMAGE_B, 30, "127.0.0.1:5000/team/app:1"),  # moved after the push
        _event("tag", IMAGE_A, 11, "alpine"),  # docker.io/library/alpine:latest
        _event("push", "docker.io/library/alpine:latest", 12),
        _event("pull", "127.0.0.1:5000/team/other:2", 5),
        _event("push", "127.0.0.1:5000/team/other:2", 6),
        _event("untag", IMAGE_A, 40, IMAGE_A),  # names no reference: ignored
    ])
    assert history.pushed_image(_push("127.0.0.1:5000/team/app:1", 20)) == \
        PushedImage(image_id=IMAGE_A, changed_since=True, pushed_again_since_change=False)
    assert history.pushed_image(_push("alpine:latest", 12)) == PushedImage(image_id=IMAGE_A)
    # pulled: which image is not in the event
    assert history.pushed_image(_push("127.0.0.1:5000/team/other:2", 6)) == PushedImage()
    assert history.pushed_image(_push("127.0.0.1:5000/team/unknown:1", 6)) == PushedImage()


def test_history_knows_when_the_registry_has_a_later_image():
    history = ReferenceHistory([
        _event("tag", IMAGE_A, 10, "registry.example.com/app:1"),
        _event("push", "registry.example.com/app:1", 20),
        _event("pull", "registry.example.com/app:1", 25),  # replaced by a pull
        _event("push", "registry.example.com/app:1", 30),  # and pushed again
    ])
    first = history.pushed_image(_push("registry.example.com/app:1", 20))
    assert first == PushedImage(image_id=IMAGE_A, changed_since=True, pushed_again_since_change=True)
    assert history.pushed_image(_push("registry.example.com/app:1", 30)) == PushedImage(image_id=None)
