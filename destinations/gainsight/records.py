"""Pure mapping from outbox rows (canonical staging columns) to Gainsight payloads.

No I/O here, so every shape Gainsight receives is unit-testable without a server. Responses are
mapped column-wise with Arrow (one table serves the Bulk CSV and the sync batches); companies,
people and activities are small dicts built per record.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

# Gainsight's documented write format `yyyy-MM-dd'T'HH:mm:ss.SSSZ`, as in the doc sample's
# "2022-07-01T06:36:00.000-07:00" (reference §3.4). Staged times are UTC.
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000+00:00"
EXTERNAL_ID_PREFIX = "cg-nps-"
AUTHOR_LOOKUP = {
    "AuthorId": {
        "fields": {"Author": "Email"},
        "lookupField": "Gsid",
        "objectName": "GsUser",
        "multiMatchOption": "FIRSTMATCH",
        "onNoMatch": "ERROR",
    }
}


def digest(*parts: Any) -> str:
    """Stable hash of the values a Gainsight record was built from (None distinct from "")."""
    text = "\x1f".join("\x00" if part is None else str(part) for part in parts)
    return hashlib.sha1(text.encode()).hexdigest()


def gainsight_datetime(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Whole seconds (CustomerGauge has no finer times); Arrow's %S would print microseconds."""
    seconds = pc.cast(column, pa.timestamp("s", tz="UTC"), safe=False)
    return pc.strftime(seconds, format=DATETIME_FORMAT)


def response_table(
    outbox: pa.Table, company_gsids: pa.Array, fields: Mapping[str, str], max_lengths: Mapping[str, int] | None = None
) -> pa.Table:
    """The response object's records, one row per outbox row, columns named by the field map.

    `category` is sent as a label (Promoter/Passive/Detractor); `company_gsid` comes from the
    ledger, never from the staged data, so only confirmed companies are referenced. Text longer
    than its Gainsight field (`max_lengths`, from the object's metadata) is cut to fit: a 20 KB
    verbatim would otherwise fail its whole record with `GSOBJ_1001`.
    """
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for canonical, target in fields.items():
        if canonical == "company_gsid":
            column = company_gsids
        elif canonical == "category":
            column = pc.utf8_capitalize(outbox["category"])
        elif canonical == "responded_at":
            column = gainsight_datetime(outbox["responded_at"])
        else:
            column = outbox[canonical]
        limit = (max_lengths or {}).get(target)
        if limit and pa.types.is_string(column.type):
            column = pc.utf8_slice_codeunits(column, 0, limit)  # code points, as Gainsight counts
        columns[target] = column
    return pa.table(columns)


def truncated(outbox: pa.Table, fields: Mapping[str, str], max_lengths: Mapping[str, int]) -> dict[str, int]:
    """Per target field, how many values `response_table` will cut (for the operator's log)."""
    counts = {}
    for canonical, target in fields.items():
        limit = max_lengths.get(target)
        if limit and canonical in outbox.column_names and pa.types.is_string(outbox[canonical].type):
            over = pc.sum(pc.greater(pc.utf8_length(outbox[canonical]), limit)).as_py() or 0
            if over:
                counts[target] = over
    return counts


def batch_records(table: pa.Table) -> list[dict[str, Any]]:
    """Sync-API records of a (≤50 row) slice; nulls are sent, so a value removed upstream is cleared."""
    return table.to_pylist()


def csv_bytes(table: pa.Table) -> bytes:
    """UTF-8 CSV with a header of field names: every string quoted, nulls empty (RFC 4180)."""
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=True, quoting_style="needed"))
    return sink.getvalue()


def company_record(account_id: str, name: str | None, key_field: str) -> dict[str, Any]:
    """Gainsight requires a Company Name; the account id stands in when CustomerGauge has none."""
    return {"Name": name or account_id, key_field: account_id}


def company_hash(account_id: str, name: str | None, renames: bool = True) -> str:
    """What the ledger confirmed for an account. Without `rename_companies` the hash also says "name
    left alone", so turning renames on re-checks every account once instead of trusting old matches."""
    if renames:
        return digest(account_id, name or account_id)
    return digest(account_id, name or account_id, "name kept")


def person_record(
    email: str, first_name: str | None, last_name: str | None, company_gsid: str | None, with_names: bool = True
) -> dict[str, Any]:
    """The People API writes every field it is sent: `with_names=False` leaves a person's names as
    they are in Gainsight (a CRM maintains them) and only adds the Company association."""
    person: dict[str, Any] = {"Email": email}
    if not with_names:
        first_name = last_name = None
    if first_name:
        person["FirstName"] = first_name
    if last_name:
        person["LastName"] = last_name
    full_name = " ".join(part for part in (first_name, last_name) if part)
    if full_name:
        person["Name"] = full_name
    if company_gsid:
        person["companies"] = [{"Company_ID": company_gsid}]
    return person


def person_hash(email: str, first_name: str | None, last_name: str | None, company_gsid: str | None) -> str:
    return digest(email, first_name, last_name, company_gsid)


def external_id(response_id: str) -> str:
    """Timeline's idempotency key: the same response always maps to the same activity."""
    return f"{EXTERNAL_ID_PREFIX}{response_id}"


def activity_record(row: Mapping[str, Any], company_gsid: str, author_email: str, activity_type: str) -> dict[str, Any]:
    """One Timeline activity on the Company: `NPS 3 (Detractor) from jane@acme.com`, notes = comment.

    `Notes` is always sent (null without a comment), so an update in place clears a removed comment.
    """
    category = (row.get("category") or "unknown").capitalize()
    who = row.get("email") or "an anonymous respondent"
    return {
        "ContextName": "Company",
        "TypeName": activity_type,
        "ExternalId": external_id(str(row["response_id"])),
        "Subject": f"NPS {row.get('score')} ({category}) from {who}",
        "ActivityDate": row["responded_at"].strftime(DATETIME_FORMAT),
        "Author": author_email,
        "GsCompanyId": company_gsid,
        "Notes": row.get("comment") or None,
    }


def activity_hash(activity: Mapping[str, Any]) -> str:
    """What an activity shows, from a record sent or a row read back from `activity_timeline`."""
    return digest(activity.get("Subject"), activity.get("Notes") or None, activity.get("GsCompanyId"))
