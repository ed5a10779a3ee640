"""Cloud storage: the `CloudStorage` protocol, the upload it takes and what it returns.

An object path is a key like ``invoices/2025/001.pdf``: at most 1024 UTF-8
bytes (S3's and GCS's limit), relative, without ``.`` or ``..`` segments or
control characters, so it means the same thing to every backend and cannot
climb out of a directory in a file-backed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import msgspec

from . import _formats as check
from ._errors import ConfigError

__all__ = ["CloudStorage", "FileUpload", "SignedMethod", "SignedUrl", "StoredFile", "StoredObject"]

MAX_PATH_BYTES: Final = 1024
MAX_URL_LIFETIME: Final = 7 * 24 * 3600  # seconds; S3's SigV4 maximum
SignedMethod = Literal["GET", "PUT"]


def check_path(value: object, field: str = "path") -> str:
    """``value`` if it is a usable object path (see the module docstring); raise otherwise."""
    path = check.identifier(field, value, max_length=MAX_PATH_BYTES)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ConfigError(field, f"<{len(path)} characters>", f"at most {MAX_PATH_BYTES} bytes")
    if path.startswith("/") or any(part in (".", "..") for part in path.split("/")):
        raise ConfigError(field, path, "must be relative, without . or .. segments")
    return path


def check_lifetime(expires_in: object) -> int:
    """A signed URL's lifetime in seconds: > 0 and at most 7 days."""
    seconds = check.count("expires_in", expires_in)
    if not 0 < seconds <= MAX_URL_LIFETIME:
        raise ConfigError("expires_in", expires_in, f"must be 1..{MAX_URL_LIFETIME} seconds")
    return seconds


class FileUpload(msgspec.Struct, frozen=True, kw_only=True):
    """``content`` to store at ``path``; ``metadata`` becomes the object's custom metadata."""

    path: str
    content: bytes
    content_type: str = "application/octet-stream"
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_path(self.path)
        check.same_type("content", self.content, bytes)
        check.media_type("content_type", self.content_type)
        metadata = check.string_map("metadata", self.metadata)
        for key, value in metadata.items():
            check.header_name("metadata", key)  # sent as x-amz-meta-<key> / x-goog-meta-<key>
            if value:
                check.header_text(f"metadata[{key!r}]", value)
        msgspec.structs.force_setattr(self, "metadata", metadata)


class StoredObject(msgspec.Struct, frozen=True, kw_only=True):
    """An object as stored; ``url`` is its public address when it has one."""

    path: str
    size: int
    content_type: str
    etag: str | None = None
    url: str | None = None


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    """A downloaded object with its content."""

    path: str
    content: bytes
    content_type: str
    etag: str | None = None


class SignedUrl(msgspec.Struct, frozen=True, kw_only=True):
    """A URL that grants ``method`` on one object until ``expires_at`` (Unix time).

    Whoever holds it has that access, so repr leaves out its query (the signature).
    """

    url: str
    expires_at: float
    method: SignedMethod = "GET"

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        shown = parts._replace(query="<signature>" if parts.query else "").geturl()
        return f"SignedUrl(url={shown!r}, expires_at={self.expires_at!r}, method={self.method!r})"


@runtime_checkable
class CloudStorage(Protocol):
    """Stores files; the original's ``CloudStorageConnectorInterface``.

    A path with no object raises `VendorError` with status 404, as the
    provider's HTTP answer does.
    """

    async def upload(self, upload: FileUpload, *, tenant_id: str | None = None) -> StoredObject:
        """Store (or replace) the object at ``upload.path``."""
        ...

    async def download(self, path: str, *, tenant_id: str | None = None) -> StoredFile:
        """The object at ``path``."""
        ...

    async def delete(self, path: str, *, tenant_id: str | None = None) -> None:
        """Remove the object at ``path``; no object there is not an error (as S3 and GCS)."""
        ...

    async def generate_signed_url(
        self,
        path: str,
        *,
        expires_in: int = 3600,
        method: SignedMethod = "GET",
        tenant_id: str | None = None,
    ) -> SignedUrl:
        """A URL granting ``method`` on ``path`` for ``expires_in`` seconds (default 1 h)."""
        ...
