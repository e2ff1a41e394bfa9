"""Authentication (reference §2): the static ``accesskey`` header or an M2M OAuth Bearer token.

The token endpoint takes HTTP Basic client credentials with a ``grant_type=client_credentials``
form body or no body at all [observed], and answers the raw OAuth JSON (not the envelope). Tokens
expire on the sandbox clock, so advancing it 24 hours expires them.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from sandbox.common.server import Request, Response, json_response
from sandbox.common.tokens import TokenIssuer, basic_credentials
from sandbox.gainsight.envelope import GainsightError


def unauthorized() -> GainsightError:
    """401 with the documented GS_APIG_2401 body (status [assumed])."""
    return GainsightError(401, "GS_APIG_2401", "Unauthorized")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Authenticator:
    def __init__(
        self, access_key: str, client_id: str | None, client_secret: str | None, tokens: TokenIssuer
    ) -> None:
        if not access_key:
            raise ValueError("access_key must be a non-empty string")
        if (client_id is None) != (client_secret is None):
            raise ValueError("give both client_id and client_secret (M2M OAuth) or neither")
        self.access_key = access_key
        self._client = (client_id, client_secret) if client_id is not None and client_secret is not None else None
        self.tokens = tokens

    def authenticated(self, request: Request) -> bool:
        """A valid ``accesskey`` (header name in any case) or a live Bearer token."""
        key = request.headers.get("accesskey")
        if key is not None and _same(key, self.access_key):
            return True
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and bool(token) and self.tokens.is_valid(token.strip())

    def grant(self, request: Request) -> Response:
        """``POST /v1/users/m2m/oauth/token``; bad credentials -> 401 GS_APIG_2401 [assumed body]."""
        if request.body:
            content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                form = parse_qs(request.body.decode("utf-8"), strict_parsing=True)
            except (UnicodeDecodeError, ValueError):
                form = {}
            if content_type != "application/x-www-form-urlencoded" or form.get("grant_type") != ["client_credentials"]:
                raise GainsightError(400, "invalid_request", "Send grant_type=client_credentials as a form body, or no body")
        basic = basic_credentials(request.headers.get("Authorization") or "")
        if self._client is None or basic is None:
            raise unauthorized()
        # Both comparisons always run: no timing hint about which half was wrong.
        id_ok = _same(basic[0], self._client[0] or "")
        secret_ok = _same(basic[1], self._client[1] or "")
        if not (id_ok and secret_ok):
            raise unauthorized()
        return json_response(
            200, {"access_token": self.tokens.issue(), "token_type": "Bearer", "expires_in": self.tokens.expires_in}
        )
