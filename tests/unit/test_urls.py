"""URL rules (https only, public addresses after DNS, allow-list) and own-bucket URL recognition."""

from __future__ import annotations

import pytest
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRefused, URLRules, check_address, check_url, storage_key_for_url

DNS = {
    "cdn.example": ["93.184.216.34"],
    "inside.example": ["93.184.216.34", "10.0.0.5"],  # one bad address is enough to refuse
    "minio.dev": ["127.0.0.1"],
    "meta.example": ["169.254.169.254"],
}


def resolve(host: str, port: int) -> list[str]:
    return DNS[host]


def test_public_https_url_passes_and_returns_its_addresses() -> None:
    assert check_url("https://cdn.example/a.mp4?x=1", URLRules(), resolve) == ["93.184.216.34"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://cdn.example/a.mp4", "must use https"),
        ("ftp://cdn.example/a.mp4", "must use https"),
        ("https:///a.mp4", "no host"),
        ("https://inside.example/a.mp4", "10.0.0.5, a private address"),
        ("https://meta.example/", "cloud metadata"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://169.254.1.1/", "link-local"),
        ("https://127.0.0.1:9000/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:192.168.1.1]/", "private"),
        ("https://100.100.100.200/", "cloud metadata"),
        ("https://0.0.0.0/", "not a public address"),
        ("https://224.0.0.1/", "multicast"),
        ("https://metadata.google.internal/", "metadata host"),
        ("https://example.com:99999/", "malformed"),
    ],
)
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(URLRefused, match=why):
        check_url(url, URLRules(), resolve)


def test_allow_list_admits_dev_hosts_and_cidrs_but_never_metadata() -> None:
    rules = URLRules(allow_hosts="minio.dev, 10.0.0.0/8", allow_http=True)
    assert check_url("http://minio.dev:9000/b/k", rules, resolve) == ["127.0.0.1"]
    assert check_url("https://inside.example/x", rules, resolve)
    check_address("10.1.1.1", "whatever", rules)
    with pytest.raises(URLRefused, match="loopback"):
        check_address("127.0.0.1", "other.host", rules)
    with pytest.raises(URLRefused, match="metadata"):
        check_url("http://169.254.169.254/", URLRules(allow_hosts="169.254.0.0/16", allow_http=True), resolve)


def test_rules_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URL_ALLOW_HOSTS", "127.0.0.1,localhost")
    monkeypatch.setenv("URL_ALLOW_HTTP", "true")
    rules = URLRules()
    assert rules.allow_http and rules.allowed_entries()[0] == {"localhost"}
    assert check_url("http://127.0.0.1:19000/x", rules, resolve) == ["127.0.0.1"]


def test_without_dns_only_the_syntax_and_literal_addresses_are_checked() -> None:
    assert check_url("https://not-resolvable.invalid/a", URLRules(), None) == []
    with pytest.raises(URLRefused):
        check_url("https://10.0.0.1/a", URLRules(), None)


S3 = S3Settings(
    endpoint_url="http://minio.ffmpeg.svc:9000", public_endpoint_url="https://s3.example.com/store", bucket="ffmpeg"
)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        (
            "http://minio.ffmpeg.svc:9000/ffmpeg/files/t1/dir_a/in%20put.mp4?X-Amz-Signature=abc",
            "files/t1/dir_a/in put.mp4",
        ),
        ("https://s3.example.com/store/ffmpeg/files/t1/d/a.mp4?X-Amz-Expires=3600", "files/t1/d/a.mp4"),
        ("https://s3.example.com:443/store/ffmpeg/files/t1/d/a.mp4", "files/t1/d/a.mp4"),
        ("https://ffmpeg.s3.example.com/store/files/t1/d/a.mp4", "files/t1/d/a.mp4"),
        ("https://s3.example.com/store/other-bucket/files/t1/d/a.mp4", None),
        ("https://s3.example.com/ffmpeg/files/t1/d/a.mp4", None),  # not under the endpoint's path
        ("https://evil.example/store/ffmpeg/files/t1/d/a.mp4", None),
        ("http://s3.example.com/store/ffmpeg/files/t1/d/a.mp4", None),  # other scheme and port
        ("https://s3.example.com/store/ffmpeg/", None),
    ],
)
def test_storage_key_for_url_recognises_only_our_bucket(url: str, key: str | None) -> None:
    assert storage_key_for_url(url, S3) == key
