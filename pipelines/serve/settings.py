"""`[nps_to_gainsight.serve]`: the webhook receiver's settings (env `NPS_TO_GAINSIGHT__SERVE__*`).

Standard library only: `config_keys` reads the field names to know the section's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

AUTH_MODES = ("hmac", "basic", "header")
SECTION = "nps_to_gainsight.serve"
MIN_SECRET_LENGTH = 16  # a shared secret shorter than this is guessable; refused at start


@dataclass(frozen=True)
class ServeSettings:
    """How `serve` listens, authenticates CustomerGauge's calls and schedules its reconciliation."""

    host: str = "127.0.0.1"
    port: int = 8787
    webhook_auth: str = "hmac"  # hmac | basic | header
    webhook_secret: str = ""  # a secret: .dlt/secrets.toml or env, never config.toml
    signature_header: str = "X-Signature"
    timestamp_header: str = "X-Signature-Timestamp"  # hmac only; "" = the body alone is signed
    timestamp_tolerance_seconds: int = 300
    max_body_bytes: int = 1_048_576
    reconcile_minutes: int = 60  # 0 = no reconciliation timer (webhooks only)


def load_serve_settings() -> ServeSettings:
    """Resolve and check the section; a ConfigError names the key and its env var."""
    import dlt

    from pipelines.errors import ConfigError
    from pipelines.settings import env_name

    values: dict[str, object] = {}
    for spec_field in fields(ServeSettings):
        lookup = dlt.secrets if spec_field.name == "webhook_secret" else dlt.config
        value: object = lookup.get(f"{SECTION}.{spec_field.name}")
        if value is None or value == "" and spec_field.name not in ("timestamp_header", "webhook_secret"):
            continue
        if isinstance(spec_field.default, int):
            try:
                value = int(str(value))
            except ValueError:
                raise ConfigError(
                    f"{SECTION}.{spec_field.name} must be an integer, got {value!r} "
                    f"(env {env_name(SECTION, spec_field.name)})"
                ) from None
        values[spec_field.name] = value if isinstance(value, int) else str(value)
    settings = ServeSettings(**values)  # type: ignore[arg-type]  # names and types checked above
    problems: list[tuple[str, str]] = []  # (key, what is wrong): each line names the key and its env var
    if settings.webhook_auth not in AUTH_MODES:
        problems.append(("webhook_auth", f"must be one of {', '.join(AUTH_MODES)}, got {settings.webhook_auth!r}"))
    if not settings.webhook_secret:
        problems.append(("webhook_secret", f"must be set (at least {MIN_SECRET_LENGTH} characters) in .dlt/secrets.toml"))
    elif len(settings.webhook_secret) < MIN_SECRET_LENGTH:
        problems.append(("webhook_secret", f"too short (min {MIN_SECRET_LENGTH} characters)"))
    elif settings.webhook_auth == "basic" and ":" not in settings.webhook_secret:
        problems.append(("webhook_secret", "must be user:password when webhook_auth is basic"))
    if not settings.signature_header.strip():
        problems.append(("signature_header", "must name a header"))
    if settings.max_body_bytes < 1024:
        problems.append(("max_body_bytes", f"must be at least 1024, got {settings.max_body_bytes}"))
    if settings.reconcile_minutes < 0:
        problems.append(("reconcile_minutes", f"must be >= 0, got {settings.reconcile_minutes}"))
    if settings.timestamp_tolerance_seconds < 1:
        problems.append(("timestamp_tolerance_seconds", f"must be >= 1, got {settings.timestamp_tolerance_seconds}"))
    if not 0 <= settings.port <= 65535:
        problems.append(("port", f"must be 0..65535, got {settings.port}"))
    if problems:
        raise ConfigError("\n".join(f"{SECTION}.{key} {what} (env {env_name(SECTION, key)})" for key, what in problems))
    return settings
