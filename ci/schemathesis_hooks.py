"""Schemathesis hooks for hongbao: sign the operator API's requests.

Every `/admin/v1/` request must carry the four `x-hongbao-*` headers of `hongbao-auth`: an
HMAC-SHA256 over the canonical request (docs/SECURITY.md). The signature covers the exact body
bytes, so it is computed as a `requests` auth on the prepared request, after serialization.
The key comes from the operator keys file named by `HONGBAO_OPERATOR_KEYS` (the demo writes one
into its data directory).
"""

import base64
import hashlib
import hmac
import os
import secrets
import time
import tomllib
from urllib.parse import urlsplit

import requests
import schemathesis

SCHEME = "HONGBAO-HMAC-SHA256"


def _canonical_query(raw):
    pairs = [p.split("=", 1) if "=" in p else [p, ""] for p in raw.split("&") if p]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


class OperatorSigner(requests.auth.AuthBase):
    def __init__(self, key_id, secret):
        self.key_id = key_id
        self.secret = secret

    def __call__(self, request):
        url = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        timestamp = str(int(time.time()))
        nonce = secrets.token_urlsafe(18)
        canonical = "\n".join(
            [
                SCHEME,
                self.key_id,
                request.method.upper(),
                url.path,
                _canonical_query(url.query),
                timestamp,
                nonce,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        signature = hmac.new(self.secret, canonical.encode(), hashlib.sha256).hexdigest()
        request.headers["x-hongbao-key"] = self.key_id
        request.headers["x-hongbao-timestamp"] = timestamp
        request.headers["x-hongbao-nonce"] = nonce
        request.headers["x-hongbao-signature"] = signature
        return request


def _signer():
    path = os.environ.get("HONGBAO_OPERATOR_KEYS")
    if not path:
        return None
    with open(path, "rb") as f:
        key = tomllib.load(f)["keys"][0]
    secret = key["secret"]
    if secret.startswith("hex:"):
        raw = bytes.fromhex(secret[len("hex:"):])
    else:
        raw = base64.b64decode(secret[len("base64:"):])
    return OperatorSigner(key["id"], raw)


SIGNER = _signer()


@schemathesis.hook
def before_call(context, case, kwargs):
    if SIGNER is not None and case.path.startswith("/admin/"):
        kwargs["auth"] = SIGNER
