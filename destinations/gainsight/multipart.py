"""The Bulk upload's multipart/form-data body, with the CSV written straight into it, on disk.

A Bulk file can be 80 MB, written a slice of rows at a time as the push's pages arrive.
Rendering the CSV and then letting `requests` encode a multipart body
from it holds two copies in memory; here pyarrow writes the CSV into the one body that is sent, an
anonymous temporary file (in `$TMPDIR`, removed when closed or when the process dies), and
`requests` streams that file (a file object with a known length) in blocks. The run's memory then
does not grow with the Bulk file size.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.csv as pa_csv

from .errors import LocalWriteFailed

READ_BLOCK = 1 << 20


class BulkFile:
    """`jobId` and `file` parts (reference §4.8), the CSV appended from Arrow tables a slice at a time."""

    def __init__(self, job_id: str, filename: str) -> None:
        self.boundary = uuid.uuid4().hex
        self.filename = filename
        self.rows = 0
        self.csv_bytes = 0
        try:
            self.body = tempfile.TemporaryFile(prefix="gainsight-bulk-")  # noqa: SIM115 - lives as long as the BulkFile; close() closes it
        except OSError as exc:
            raise LocalWriteFailed(f"cannot create the Bulk file in {tempfile.gettempdir()}: {exc}") from exc
        self._write(
            lambda: self.body.write(
                (
                    f"--{self.boundary}\r\n"
                    'Content-Disposition: form-data; name="jobId"\r\n\r\n'
                    f"{job_id}\r\n"
                    f"--{self.boundary}\r\n"
                    f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                    "Content-Type: text/csv\r\n\r\n"
                ).encode()
            )
        )
        self._csv_start = self.body.tell()

    def append_fitting(self, table: pa.Table, max_bytes: int) -> int:
        """Append as many leading rows of `table` as keep the CSV within `max_bytes` (the header
        comes with the first rows); returns how many (0: not even one fits)."""
        length = table.num_rows
        while length:
            end = self.body.tell()
            self._write(functools.partial(self._write_csv, table.slice(0, length)))
            size = self.body.tell() - self._csv_start
            if size <= max_bytes:
                self.rows += length
                self.csv_bytes = size
                return length
            self.body.truncate(end)
            self.body.seek(end)
            length = min(length - 1, int(length * (max_bytes - (end - self._csv_start)) * 0.95 / (size - (end - self._csv_start))))
            length = max(length, 0)
        return 0

    def _write_csv(self, rows: pa.Table) -> None:
        pa_csv.write_csv(rows, self.body, pa_csv.WriteOptions(include_header=not self.rows, quoting_style="needed"))

    def seal(self) -> None:
        """End the body; it is then read from the start."""
        self._write(lambda: self.body.write(f"\r\n--{self.boundary}--\r\n".encode()))
        self.body.seek(0)

    def _write(self, write: Callable[[], object]) -> None:
        try:
            write()
        except BaseException as exc:
            self.body.close()
            if isinstance(exc, OSError):
                raise LocalWriteFailed(f"writing the Bulk file in {tempfile.gettempdir()} failed: {exc}") from exc
            raise

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def sha256(self) -> str:
        """Checksum of the CSV part (for the upload log), read back from the body in blocks."""
        digest = hashlib.sha256()
        self.body.seek(self._csv_start)
        left = self.csv_bytes
        while left:
            block = self.body.read(min(READ_BLOCK, left))
            digest.update(block)
            left -= len(block)
        self.body.seek(0)
        return digest.hexdigest()

    def close(self) -> None:
        self.body.close()
