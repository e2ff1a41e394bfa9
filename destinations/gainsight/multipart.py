"""The Bulk upload's multipart/form-data body, with the CSV written straight into it, on disk.

A Bulk file can be 80 MB. Rendering the CSV and then letting `requests` encode a multipart body
from it holds two copies in memory; here pyarrow writes the CSV into the one body that is sent, an
anonymous temporary file (in `$TMPDIR`, removed when closed or when the process dies), and
`requests` streams that file (a file object with a known length) in blocks. The run's memory then
does not grow with the Bulk file size.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid

import pyarrow as pa
import pyarrow.csv as pa_csv

from .errors import LocalWriteFailed

READ_BLOCK = 1 << 20


class BulkFile:
    """`jobId` and `file` parts (reference §4.8), the CSV rendered from an Arrow table."""

    def __init__(self, job_id: str, filename: str, table: pa.Table) -> None:
        self.boundary = uuid.uuid4().hex
        self.filename = filename
        self.rows = table.num_rows
        try:
            self.body = tempfile.TemporaryFile(prefix="gainsight-bulk-")  # noqa: SIM115 - lives as long as the BulkFile; close() closes it
        except OSError as exc:
            raise LocalWriteFailed(f"cannot create the Bulk file in {tempfile.gettempdir()}: {exc}") from exc
        try:
            self.body.write(
                (
                    f"--{self.boundary}\r\n"
                    'Content-Disposition: form-data; name="jobId"\r\n\r\n'
                    f"{job_id}\r\n"
                    f"--{self.boundary}\r\n"
                    f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                    "Content-Type: text/csv\r\n\r\n"
                ).encode()
            )
            self._csv_start = self.body.tell()
            pa_csv.write_csv(table, self.body, pa_csv.WriteOptions(include_header=True, quoting_style="needed"))
            self.csv_bytes = self.body.tell() - self._csv_start
            self.body.write(f"\r\n--{self.boundary}--\r\n".encode())
            self.body.seek(0)
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
