"""What may leave the connector, and what may stay in its file, of a respondent's e-mail and comment.

The integration guide asks to "keep comments and emails within your DPA scope; mask if needed". One
transform, `apply`, serves every place that does so: the push payloads (what Gainsight receives:
responses, Timeline subject and notes) and the staging scrub (what the DuckDB file keeps once
Gainsight confirmed a response). Rules:

- e-mail `keep | hash | mask`: `hash` is an HMAC-SHA256 of the trimmed, lower-cased address keyed
  with the secret `hash_salt`, spelled as an address (`<64 hex>@hashed.invalid`, RFC 2606's reserved
  domain) so Gainsight's EMAIL fields accept it; the same person gives the same value in every run
  and every tenant that shares the salt, and nobody without the salt can test a guess. `mask` keeps
  the first character and the domain (`j***@acme.com`): readable, not unique.
- comment `keep | drop | truncate:N`: `drop` sends/keeps null, `truncate:N` the first N characters.

A value already in a scrubbed form passes through unchanged, so applying a rule twice (a response
scrubbed in staging and sent again) changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

EMAIL_RULES = ("keep", "hash", "mask")
COMMENT_RULES = ("keep", "drop", "truncate:N")
HASH_DOMAIN = "hashed.invalid"
MASK = "***"
_TRUNCATE = re.compile(r"truncate:(\d+)")
EMAIL = "email"
COMMENT = "comment"


class InvalidPiiSetting(ValueError):
    """A PII setting that cannot be applied; the message names the key (the caller adds the env var)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Rules:
    """One pair of rules (e-mail, comment) and the salt a `hash` needs."""

    email: str = "keep"
    comment: str = "keep"
    salt: str | None = field(default=None, repr=False)

    @property
    def keeps_everything(self) -> bool:
        return self.email == "keep" and self.comment == "keep"

    def fingerprint(self) -> str:
        """Identifies what these rules send, without revealing the salt: a new salt hashes every
        address differently, so it counts as a change."""
        salt_id = pseudonym_digest("rules fingerprint", self.salt) if self.email == "hash" and self.salt else ""
        return hashlib.sha256(f"{self.email}\x1f{self.comment}\x1f{salt_id}".encode()).hexdigest()


KEEP = Rules()


@dataclass(frozen=True)
class PiiSettings:
    """`[nps_to_gainsight.pii]`: what Gainsight receives (`push_*`), what the staging file keeps once a
    response is in Gainsight (`stage_*`), and how long raw quarantined payloads and staged comments stay."""

    push_email: str = "keep"
    push_comment: str = "keep"
    stage_email: str = "keep"
    stage_comment: str = "keep"
    quarantine_retention_days: int | None = None  # None: kept until fixed upstream or deleted by hand
    comment_retention_days: int | None = None
    hash_salt: str | None = field(default=None, repr=False)

    @property
    def push(self) -> Rules:
        return Rules(self.push_email, self.push_comment, self.hash_salt)

    @property
    def stage(self) -> Rules:
        return Rules(self.stage_email, self.stage_comment, self.hash_salt)

    @property
    def scrubs_staging(self) -> bool:
        return not self.stage.keeps_everything or self.comment_retention_days is not None


def parse(values: Mapping[str, Any]) -> PiiSettings:
    """Settings from raw config values (TOML types or env strings); strict: an unknown rule, a bad
    number or `hash` without a salt raises `InvalidPiiSetting` naming the key."""
    rules: dict[str, Any] = {}
    for key, allowed in (("push_email", EMAIL_RULES), ("stage_email", EMAIL_RULES)):
        rules[key] = _rule(key, values.get(key), allowed)
    for key in ("push_comment", "stage_comment"):
        rules[key] = _comment_rule(key, values.get(key))
    for key in ("quarantine_retention_days", "comment_retention_days"):
        rules[key] = _days(key, values.get(key))
    salt = values.get("hash_salt")
    salt = str(salt) if salt not in (None, "") else None
    if salt is None:
        for key in ("push_email", "stage_email"):
            if rules[key] == "hash":
                raise InvalidPiiSetting(
                    "hash_salt", f"{key} = hash needs hash_salt, a secret of your own (at least 16 characters)"
                )
    elif len(salt) < 16:
        raise InvalidPiiSetting("hash_salt", "hash_salt must be at least 16 characters (a random secret)")
    return PiiSettings(**rules, hash_salt=salt)


def _rule(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = "keep" if value in (None, "") else str(value).strip().lower()
    if text not in allowed:
        raise InvalidPiiSetting(key, f"{key} must be one of {' | '.join(allowed)}, got {value!r}")
    return text


def _comment_rule(key: str, value: Any) -> str:
    text = "keep" if value in (None, "") else str(value).strip().lower().replace(" ", "")
    if text in ("keep", "drop") or _TRUNCATE.fullmatch(text):
        return text
    raise InvalidPiiSetting(key, f"{key} must be keep, drop or truncate:N (N characters, e.g. truncate:200), got {value!r}")


def _days(key: str, value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        days = int(str(value).strip()) if not isinstance(value, bool) else -1
    except ValueError:
        days = -1
    if days < 0:
        raise InvalidPiiSetting(key, f"{key} must be a whole number of days (0 or more), got {value!r}")
    return days


# --- the transform ----------------------------------------------------------------------------------


def pseudonym_digest(text: str, salt: str) -> str:
    return hmac.new(salt.encode(), text.encode(), hashlib.sha256).hexdigest()


def hashed_email(address: str, salt: str) -> str:
    """The stable pseudonym of an address: the same person in every run, nothing to reverse without the salt."""
    if is_scrubbed(address):
        return address
    return f"{pseudonym_digest(address.strip().lower(), salt)}@{HASH_DOMAIN}"


def masked_email(address: str) -> str:
    if is_scrubbed(address):
        return address
    local, at, domain = address.strip().partition("@")
    return f"{local[:1]}{MASK}@{domain}" if at else MASK


def is_scrubbed(address: str) -> bool:
    """A hashed or masked address (already what some rule made of it)."""
    return address.endswith("@" + HASH_DOMAIN) or MASK in address


def _email_function(rules: Rules) -> Callable[[str], str] | None:
    if rules.email == "hash":
        if not rules.salt:
            raise InvalidPiiSetting("hash_salt", "e-mail hashing needs hash_salt")
        salt = rules.salt
        return lambda address: hashed_email(address, salt)
    if rules.email == "mask":
        return masked_email
    return None


def _comment_function(rules: Rules) -> Callable[[str], str | None] | None:
    if rules.comment == "drop":
        return lambda comment: None
    found = _TRUNCATE.fullmatch(rules.comment)
    if found:
        limit = int(found.group(1))
        return lambda comment: comment[:limit]
    return None


def apply(table: pa.Table, rules: Rules) -> pa.Table:
    """`table` with its `email` and `comment` columns (where present) as `rules` allow; other columns
    and the row order untouched. Each distinct value is transformed once."""
    for column, function in ((EMAIL, _email_function(rules)), (COMMENT, _comment_function(rules))):
        if function is None or column not in table.column_names:
            continue
        values = table[column].to_pylist()
        done: dict[str, str | None] = {}
        out: list[str | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            if value not in done:
                done[value] = function(value)
            out.append(done[value])
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(out, pa.string()))
    return table


def changes_sql(rules: Rules) -> str:
    """SQL over `email` and `comment`: true for rows `apply` would change, so a run reads only those
    (values already in a scrubbed form pass through `apply` too)."""
    parts = []
    if rules.email != "keep":
        parts.append(f"(email IS NOT NULL AND NOT (email LIKE '%@{HASH_DOMAIN}' OR contains(email, '{MASK}')))")
    found = _TRUNCATE.fullmatch(rules.comment)
    if rules.comment == "drop":
        parts.append("comment IS NOT NULL")
    elif found:
        parts.append(f"length(comment) > {int(found.group(1))}")
    return " OR ".join(parts) or "FALSE"


def apply_row(row: Mapping[str, Any], rules: Rules) -> dict[str, Any]:
    """`apply` for one record (a dict with `email` / `comment` keys)."""
    present = [column for column in (EMAIL, COMMENT) if column in row]
    if not present or rules.keeps_everything:
        return dict(row)
    one = apply(pa.table({column: pa.array([row[column]], pa.string()) for column in present}), rules)
    return {**row, **{column: one[column][0].as_py() for column in present}}


def person_label(address: str, salt: str | None) -> str:
    """How logs name a person: a short salted hash when a salt is set, else the masked address."""
    if salt:
        return f"person {pseudonym_digest(address.strip().lower(), salt)[:12]}"
    return f"person {masked_email(address)}"
