"""Pub/Sub push authentication: the OIDC token Pub/Sub sends with each push request.

When ``service.push_audience`` or ``service.push_service_account`` is configured, a push
request must carry ``Authorization: Bearer <token>``: a Google-signed ID token whose audience
is ``push_audience`` and whose e-mail (verified) is ``push_service_account``. Checked as
google-auth's ``id_token.verify_oauth2_token`` does (``google.auth.jwt.decode``: signature
against Google's certificates, expiry, audience; then a Google issuer), with the certificates
kept for five minutes rather than fetched for every push (fetched again at once for a key id
they do not hold), from a URL that can be pointed elsewhere (``VERTEXKIT_OIDC_CERTS_URL``,
for tests).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

CERTS_URL_ENV = "VERTEXKIT_OIDC_CERTS_URL"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CERTS_SECONDS = 300.0


class AuthError(Exception):
    """The request is not from the configured push identity; ``status`` is 401 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PushVerifier:
    audience: str | None
    service_account: str | None
    certs_url: str = ""

    def __post_init__(self) -> None:
        self.certs_url = self.certs_url or os.environ.get(CERTS_URL_ENV) or GOOGLE_CERTS_URL
        self._request: Any = None
        self._certs: dict[str, str] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _certificates(self, key_id: str | None) -> dict[str, str]:
        """Google's certificates by key id, fetched at most every five minutes (at once when
        ``key_id`` is not among them: Google rotates its keys)."""
        from google.auth import exceptions
        from google.auth.transport import requests as google_requests

        with self._lock:
            stale = time.monotonic() - self._fetched > CERTS_SECONDS
            if stale or (key_id is not None and key_id not in self._certs):
                if self._request is None:
                    self._request = google_requests.Request()
                response = self._request(self.certs_url, method="GET")
                if response.status != 200:
                    raise exceptions.TransportError(
                        f"could not fetch certificates at {self.certs_url}: {response.status}"
                    )
                self._certs = json.loads(response.data.decode("utf-8"))
                self._fetched = time.monotonic()
            return self._certs

    @property
    def enabled(self) -> bool:
        return bool(self.audience or self.service_account)

    def check(self, authorization: str | None) -> dict[str, Any] | None:
        """The token's claims, or AuthError; None when push authentication is not configured."""
        if not self.enabled:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "missing bearer token: Pub/Sub push must send an OIDC token")
        from google.auth import exceptions, jwt

        try:
            header = jwt.decode_header(token.strip())
            claims = jwt.decode(
                token.strip(),
                certs=self._certificates(header.get("kid")),
                audience=self.audience,
            )
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise AuthError(401, f"invalid OIDC token: {exc}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise AuthError(401, f"invalid OIDC token: issuer {claims.get('iss')!r} is not Google")
        if self.service_account and (
            claims.get("email") != self.service_account or not claims.get("email_verified")
        ):
            raise AuthError(
                403, f"the token is not {self.service_account}'s (got {claims.get('email')})"
            )
        return claims
