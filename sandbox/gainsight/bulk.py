"""The Bulk API (reference §4.8): run a UI-made import job by uploading a CSV, then poll its status.

Real jobs are defined in Gainsight's UI (target object, INSERT/UPDATE/UPSERT, update keys, column
mapping, lookups), so the sandbox seeds them (emulator-only). An upload is checked as a whole (job,
access key, size, CSV shape) and refused with 400 if that fails; accepted, its rows are processed
in a background thread, each row validated with the data API's value rules: a bad row is counted
as a failure and not written, the others are. Status walks INIT -> IN_PROGRESS -> COMPLETED on the
sandbox clock, each phase lasting at least ``phase_seconds`` (``DEFAULT_PHASE_SECONDS`` unless the sandbox
is told otherwise), so a client must poll.
"""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from sandbox.common.clock import SandboxClock
from sandbox.common.server import Request, Response
from sandbox.gainsight.auth import unauthorized
from sandbox.gainsight.envelope import GainsightError, bad_request, ok
from sandbox.gainsight.multipart import parse_form
from sandbox.gainsight.records import Lookup, RecordPreparer, missing_required, parse_lookups
from sandbox.gainsight.schema import ObjectSpec
from sandbox.gainsight.store import Store, Table
from sandbox.gainsight.variants import Variants

Operation = Literal["INSERT", "UPDATE", "UPSERT"]
OPERATIONS = ("INSERT", "UPDATE", "UPSERT")
DEFAULT_PHASE_SECONDS = 1.0  # sandbox seconds an execution stays at least in INIT, and in IN_PROGRESS [assumed]
DEFAULT_MAX_BYTES = 80 * 1024 * 1024  # [assumed] from production scripts splitting below 79,999,500 bytes
_CHUNK_ROWS = 2000  # rows written per lock hold, so API calls interleave with a large import


@dataclass(frozen=True)
class BulkJob:
    """A Bulk import job as an admin configures it in the UI (emulator-only seeding).

    ``mapping``: CSV column -> field API name (``None``: the CSV headers are field names);
    ``lookups``: a ``lookups`` block whose ``fields`` name CSV columns; ``access_key``: the job's
    connection key (``None``: the sandbox's access key).
    """

    job_id: str
    object_name: str
    operation: Operation
    keys: tuple[str, ...] = ()
    mapping: Mapping[str, str] | None = None
    lookups: Mapping[str, Any] | None = None
    access_key: str | None = None


@dataclass
class _Compiled:
    job: BulkJob
    table: Table
    lookups: tuple[Lookup, ...]
    access_key: str


@dataclass
class _Execution:
    status_id: str
    compiled: _Compiled
    names: list[str]  # per CSV column: the field or lookup source it feeds
    rows: list[list[str]]
    created: float
    ended: float | None = None
    success: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False

    def status(self, now: float, phase: float) -> str:
        if now < self.created + phase:
            return "INIT"
        if self.ended is None or now < self.ended:
            return "IN_PROGRESS"
        return "COMPLETED"


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BulkService:
    def __init__(
        self,
        store: Store,
        preparer: RecordPreparer,
        clock: SandboxClock,
        lock: threading.RLock,
        access_key: str,
        max_bytes: int,
        variants: Variants,
        phase_seconds: float = DEFAULT_PHASE_SECONDS,
    ) -> None:
        self._store = store
        self._variants = variants
        self._preparer = preparer
        self._clock = clock
        self._lock = lock
        self._access_key = access_key
        self.max_bytes = max_bytes
        self.phase_seconds = phase_seconds
        self._jobs: dict[str, _Compiled] = {}
        self._executions: dict[str, _Execution] = {}
        self._forced: dict[str, str] = {}

    # -- emulator-only seeding and inspection ----------------------------------------------------

    def add_job(self, job: BulkJob) -> None:
        """Check a job like the UI would; ``ValueError`` for a target Bulk cannot load (Person, users)."""
        if self._store.schema.object(job.object_name) is None:
            raise ValueError(f"bulk job {job.job_id!r}: unknown object {job.object_name!r}")
        table = self._store.table(job.object_name)
        spec = table.spec
        if not spec.bulk_loadable:
            raise ValueError(f"bulk job {job.job_id!r}: the Bulk API cannot load {spec.name} (reference §4.8)")
        if job.operation not in OPERATIONS:
            raise ValueError(f"bulk job {job.job_id!r}: operation must be one of {OPERATIONS}")
        if job.operation != "INSERT" and not 1 <= len(job.keys) <= 3:
            raise ValueError(f"bulk job {job.job_id!r}: {job.operation} needs 1 to 3 update keys")
        for name in (*job.keys, *(job.mapping or {}).values()):
            field_spec = spec.field(name)
            if field_spec is None or (field_spec.system and name != "Gsid"):
                raise ValueError(f"bulk job {job.job_id!r}: {spec.name} has no writable field {name!r}")
        try:
            lookups = parse_lookups(dict(job.lookups) if job.lookups is not None else None, spec, self._store)
        except GainsightError as error:
            raise ValueError(f"bulk job {job.job_id!r}: {error.desc}") from None
        with self._lock:
            self._jobs[job.job_id] = _Compiled(job, table, lookups, job.access_key or self._access_key)

    def known_key(self, request: Request) -> bool:
        """Whether the ``accessKey`` header is the sandbox's or some job's connection key."""
        key = request.headers.get("accesskey")
        with self._lock:
            return key is not None and (key == self._access_key or any(c.access_key == key for c in self._jobs.values()))

    def fail_rows(self, keys: Iterable[str], reason: str) -> None:
        """The next rows whose key value is one of ``keys`` fail once each (emulator-only fault)."""
        with self._lock:
            self._forced.update((str(key), reason) for key in keys)

    def executions(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        with self._lock:
            return [
                {**self._status_data(e, now), "failures": [dict(f) for f in e.failures]} for e in self._executions.values()
            ]

    def reset(self) -> None:
        with self._lock:
            for execution in self._executions.values():
                execution.cancelled = True
            self._executions.clear()
            self._forced.clear()

    # -- HTTP -------------------------------------------------------------------------------------

    def upload(self, request: Request) -> Response:
        """``POST /v1.0/admin/connector/job/bulkimport``; parsing happens outside the API lock."""
        try:
            parts = parse_form(request.headers.get("Content-Type") or "", request.body)
        except ValueError as error:
            raise bad_request("BULK_INVALID_REQUEST", f"Invalid multipart/form-data body: {error}") from None
        if "file" not in parts or "jobId" not in parts:
            raise bad_request("BULK_INVALID_REQUEST")
        job_id = parts["jobId"].data.decode("utf-8", "replace").strip()
        with self._lock:
            compiled = self._jobs.get(job_id)
        if compiled is None:
            raise bad_request("BULK_JOB_NOT_FOUND", f"No Bulk API job exists with jobId {job_id!r}")
        if request.headers.get("accesskey") != compiled.access_key:
            raise unauthorized()
        data = parts["file"].data
        if len(data) > self.max_bytes:
            raise bad_request("BULK_FILE_TOO_LARGE", f"The file has {len(data)} bytes; the limit is {self.max_bytes}")
        header, rows = _read_csv(data)
        names = self._column_names(compiled, header)
        execution = _Execution(uuid.uuid4().hex, compiled, names, rows, self._clock.now())
        with self._lock:
            self._executions[execution.status_id] = execution
        threading.Thread(target=self._run, args=(execution,), name=f"bulk:{execution.status_id}", daemon=True).start()
        return ok(self._variants.bulk_upload(execution.status_id))

    def status(self, request: Request, status_id: str) -> Response:
        with self._lock:
            execution = self._executions.get(status_id)
            if execution is None:
                raise bad_request("BULK_STATUS_NOT_FOUND", f"No Bulk API execution has statusId {status_id!r}")
            return ok(self._variants.bulk_status(self._status_data(execution, self._clock.now())))

    # -- processing -------------------------------------------------------------------------------

    def _status_data(self, execution: _Execution, now: float) -> dict[str, Any]:
        status = execution.status(now, self.phase_seconds)
        done = status == "COMPLETED"
        return {
            "statusId": execution.status_id,
            "jobId": execution.compiled.job.job_id,
            "jobStatus": status,
            "totalCount": len(execution.rows),
            "successCount": execution.success if status != "INIT" else 0,
            "failureCount": len(execution.failures) if status != "INIT" else 0,
            "startTime": _iso(execution.created),
            "endTime": _iso(execution.ended) if done else None,
        }

    @staticmethod
    def _column_names(compiled: _Compiled, header: list[str]) -> list[str]:
        """What each column feeds; unknown or missing columns refuse the file [assumed]."""
        job, spec = compiled.job, compiled.table.spec
        sources = {source for lookup in compiled.lookups for source in lookup.sources}
        mapping = dict(job.mapping) if job.mapping is not None else None
        names = []
        for column in header:
            if mapping is not None and column in mapping:
                names.append(mapping[column])
            elif column in sources or (mapping is None and _writable(spec, column, job.keys)):
                names.append(column)
            else:
                raise bad_request("BULK_INVALID_FILE", f"Column {column!r} is not mapped by job {job.job_id!r}")
        missing = [c for c in (mapping or {}) if c not in header] + [k for k in job.keys if k not in names]
        if missing:
            raise bad_request("BULK_INVALID_FILE", f"The file lacks the job's columns {missing}")
        return names

    def _run(self, execution: _Execution) -> None:
        start = execution.created + self.phase_seconds
        while not execution.cancelled and self._clock.now() < start:
            time.sleep(min(0.02, self._clock.real_seconds(start - self._clock.now())))
        identity = execution.compiled.job.keys[0] if execution.compiled.job.keys else execution.names[0]
        for first in range(0, len(execution.rows), _CHUNK_ROWS):
            with self._lock:
                if execution.cancelled:
                    return
                for number, cells in enumerate(execution.rows[first : first + _CHUNK_ROWS], start=first + 1):
                    record = dict(zip(execution.names, cells, strict=True))  # _read_csv checked the width
                    reason = self._forced.pop(record.get(identity, ""), None)
                    reason = reason or self._apply(execution.compiled, record)
                    if reason is None:
                        execution.success += 1
                    else:
                        execution.failures.append({"row": number, "key": record.get(identity), "reason": reason})
        with self._lock:
            execution.ended = max(self._clock.now(), execution.created + 2 * self.phase_seconds)

    def _apply(self, compiled: _Compiled, record: dict[str, str]) -> str | None:
        """Write one row per the job's operation; the failure reason, or ``None`` when written."""
        job, table = compiled.job, compiled.table
        values, _, errors = self._preparer.prepare(
            table.spec, record, compiled.lookups, partial=job.operation != "INSERT", keys=job.keys, cells=True
        )
        matched: list[str] = []
        if not errors and job.operation != "INSERT":
            blank = [k for k in job.keys if values.get(k) is None]
            if blank:
                return f"GSOBJ_1007: update key {blank[0]} is empty"
            matched = table.match(job.keys, values)
            if not matched and job.operation == "UPDATE":
                return "GSOBJ_1011: No entity matches the given criteria"
        if not errors and not matched:
            errors = missing_required(table.spec, values)
        if errors:
            return "; ".join(f"{e['errorCode']}: {e['errorMessage']} ({e['fieldName']})" for e in errors)
        if matched:
            for gsid in matched:
                self._store.update(table, gsid, values)
        else:
            self._store.insert(table, values)
        return None


def _writable(spec: ObjectSpec, name: str, keys: tuple[str, ...]) -> bool:
    field_spec = spec.field(name)
    return field_spec is not None and (not field_spec.system or name in keys)




def _read_csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a UTF-8 CSV; empty -> GS_7571, malformed -> BULK_INVALID_FILE."""
    if not data.strip():
        raise bad_request("GS_7571")
    try:
        text = data.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error) as error:
        raise bad_request("BULK_INVALID_FILE", f"The file is not a valid UTF-8 CSV: {error}") from None
    rows = [row for row in rows if row]  # blank lines carry no record
    header = rows[0]
    if len(set(header)) != len(header) or any(not column for column in header):
        raise bad_request("BULK_INVALID_FILE", "The header row must name every column once")
    if len(rows) == 1:
        raise bad_request("GS_7571")
    width = len(header)
    for number, row in enumerate(rows[1:], start=1):
        if len(row) != width:
            raise bad_request("BULK_INVALID_FILE", f"Row {number} has {len(row)} cells; the header has {width}")
    return header, rows[1:]
