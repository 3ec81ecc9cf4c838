"""What the collector prints: secrets and URL credentials masked in every line."""

from __future__ import annotations

import io

import pytest

from imagetrail.collector.console import Console


@pytest.mark.parametrize("text, shown", [
    ("POST https://deploy:s3cret-pw@imagetrail.example/v1/reports failed",
     "POST https://***@imagetrail.example/v1/reports failed"),
    ("proxy http://token123@proxy.example:3128 refused", "proxy http://***@proxy.example:3128 refused"),
    ("HTTPS://A:B@HOST/x and ssh://git@host:22/repo", "HTTPS://***@HOST/x and ssh://***@host:22/repo"),
    ("mail ada@example.com about https://host/a@b", "mail ada@example.com about https://host/a@b"),
])
def test_credentials_inside_urls_are_masked(text, shown):
    out, err = io.StringIO(), io.StringIO()
    console = Console({"TF_BUILD": "True"}, out=out, err=err)
    console.info(text)
    console.warning(text)
    assert out.getvalue().splitlines() == [
        "ImageTrail: " + shown,
        "##vso[task.logissue type=warning]ImageTrail: " + shown,
    ]


def test_known_secret_values_are_masked_before_urls():
    out = io.StringIO()
    console = Console({"SYSTEM_ACCESSTOKEN": "abcdef123456"}, out=out, err=out)
    console.info("Authorization: Bearer abcdef123456 for https://u:abcdef123456@h/")
    assert out.getvalue() == "ImageTrail: Authorization: Bearer *** for https://***@h/\n"
