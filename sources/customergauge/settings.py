"""Static knowledge about CustomerGauge deployments: regions, endpoints, paging and field defaults."""

from __future__ import annotations

from typing import Final

from connector_common import schema
from connector_common.first_contact import Setting

from .errors import InvalidSetting

SECTION: Final = "sources.customergauge"


def setting(key: str) -> Setting:
    """The config key and env var of one source option, for messages that say what to fix."""
    return Setting(f"{SECTION}.{key}", f"SOURCES__CUSTOMERGAUGE__{key.upper()}")


API_BASE_URL: Final = setting("api_base_url")
TOKEN_URL: Final = setting("token_url")
CREDENTIALS: Final = (setting("client_id"), setting("client_secret"))

REGIONS: Final = ("eu", "us", "au")

RESPONSES_PATH: Final = "/v7/rest/sync/responses"
NON_RESPONSES_PATH: Final = "/v7/rest/sync/non-responses"

# The documented maximum; fewer round trips is the whole point of a sync feed.
MAX_PER_PAGE: Final = 1000

# Expansions the canonical row needs. `tags` and `questions` are valid too but unused downstream,
# and every expansion costs bytes on every page.
DEFAULT_EXPANSIONS: Final = ("drivers", "properties")
KNOWN_EXPANSIONS: Final = frozenset({"drivers", "questions", "tags", "properties"})

# Canonical column -> CustomerGauge `properties` field label (connector_common/schema.py). Field sets
# are per tenant, so every entry can be overridden in `[sources.customergauge.property_map]`.
DEFAULT_PROPERTY_MAP: Final = schema.DEFAULT_PROPERTY_MAP


def default_api_base_url(region: str) -> str:
    """API host for a region, e.g. https://api.eu.customergauge.com."""
    return f"https://api.{_check_region(region)}.customergauge.com"


def default_token_url(region: str) -> str:
    """OAuth2 token endpoint for a region."""
    return f"https://auth.{_check_region(region)}.customergauge.com/oauth2/token"


def _check_region(region: str) -> str:
    value = region.strip().lower()
    if value not in REGIONS:
        raise InvalidSetting(
            f"sources.customergauge.region must be one of {', '.join(REGIONS)}, got {region!r} "
            "(env SOURCES__CUSTOMERGAUGE__REGION)"
        )
    return value
