"""The rules every vendor URL and credential meet before any call (connector_common.first_contact)."""

from __future__ import annotations

import pytest

from connector_common.first_contact import Setting, credential_problem, url_problem

KEY = Setting("destination.gainsight.access_key", "DESTINATION__GAINSIGHT__ACCESS_KEY")
URL = Setting("destination.gainsight.base_url", "DESTINATION__GAINSIGHT__BASE_URL")


@pytest.mark.parametrize("value", ["", "   ", "<your access key>", "your-access-key", "YOUR_KEY", "changeme", "..."])
def test_empty_and_placeholder_credentials_are_named(value):
    problem = credential_problem(value, KEY)
    assert problem is not None and "DESTINATION__GAINSIGHT__ACCESS_KEY" in problem and "destination.gainsight.access_key" in problem


@pytest.mark.parametrize("value", [None, "3f9a0c1e-real-key", "yourself2024"])
def test_real_or_missing_credentials_pass(value):
    assert credential_problem(value, KEY) is None


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://127.9.9.9/x", "http://localhost:1/x", "http://[::1]:9/x", "https://acme.gainsightcloud.com"]
)
def test_https_or_loopback_urls_pass(url):
    assert url_problem(url, URL) is None


@pytest.mark.parametrize("url", ["http://acme.gainsightcloud.com", "http://10.0.0.5", "ftp://x.example.com", "acme.gainsightcloud.com"])
def test_plain_http_off_loopback_and_non_urls_are_refused(url):
    problem = url_problem(url, URL)
    assert problem is not None and "DESTINATION__GAINSIGHT__BASE_URL" in problem
