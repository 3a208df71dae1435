"""HMAC-SHA256 signatures of snapshot bodies."""

from __future__ import annotations

import hashlib
import hmac

from app.export.signing import sign, verify

BODY = b'{"node_id":"hue","records":[]}'


class TestSign:
    def test_is_hmac_sha256_hex_of_the_exact_bytes(self):
        want = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
        assert sign(BODY, "s3cret") == f"sha256={want}"

    def test_differs_per_secret_and_per_byte(self):
        assert sign(BODY, "a") != sign(BODY, "b")
        assert sign(BODY, "a") != sign(BODY + b" ", "a")


class TestVerify:
    def test_accepts_its_own_signature(self):
        assert verify(BODY, "s3cret", sign(BODY, "s3cret"))

    def test_refuses_a_tampered_body(self):
        assert not verify(BODY.replace(b"hue", b"hua"), "s3cret", sign(BODY, "s3cret"))

    def test_refuses_another_secret(self):
        assert not verify(BODY, "s3cret", sign(BODY, "other"))

    def test_refuses_missing_or_malformed_headers(self):
        digest = sign(BODY, "s3cret").removeprefix("sha256=")
        for header in (None, "", digest, "sha1=" + digest, "sha256=", "sha256=zz", "sha256=" + digest.upper() + "é"):
            assert not verify(BODY, "s3cret", header)
