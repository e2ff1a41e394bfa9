"""OAuth2 client-credentials for CustomerGauge.

CustomerGauge tokens live one hour (`expires_in`); `connector_common.tokens.TokenCache` renews them
a little before expiry and the client renews once more on a 401. This module only holds the grant;
the HTTP call itself goes through the client, the single choke point for CustomerGauge traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClientCredentials:
    """A Connected App's id and secret. `repr` never shows the secret."""

    client_id: str
    client_secret: str = field(repr=False)

    def grant_form(self) -> dict[str, str]:
        """Form body of the documented `grant_type=client_credentials` request."""
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
