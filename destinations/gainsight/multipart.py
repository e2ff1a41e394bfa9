"""The Bulk upload's multipart/form-data body, with the CSV written straight into it.

A Bulk file can be 80 MB. Rendering the CSV and then letting `requests` encode a multipart body
from it holds two copies; here pyarrow writes the CSV into the one buffer that is sent, and
`requests` streams that buffer (a file object with a known length) without copying it.
"""

from __future__ import annotations

import hashlib
import io
import uuid

import pyarrow as pa
import pyarrow.csv as pa_csv


class BulkFile:
    """`jobId` and `file` parts (reference §4.8), the CSV rendered from an Arrow table."""

    def __init__(self, job_id: str, filename: str, table: pa.Table) -> None:
        self.boundary = uuid.uuid4().hex
        self.filename = filename
        self.rows = table.num_rows
        self.body = io.BytesIO()
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
        start = self.body.tell()
        pa_csv.write_csv(table, self.body, pa_csv.WriteOptions(include_header=True, quoting_style="needed"))
        self.csv_bytes = self.body.tell() - start
        self.body.write(f"\r\n--{self.boundary}--\r\n".encode())
        self.body.seek(0)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def sha256(self) -> str:
        """Checksum of the CSV part (for the upload log), without copying it out of the body."""
        view = self.body.getbuffer()
        end = view.nbytes - len(f"\r\n--{self.boundary}--\r\n")
        try:
            return hashlib.sha256(view[end - self.csv_bytes : end]).hexdigest()
        finally:
            view.release()
