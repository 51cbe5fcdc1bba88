"""Errors of the media layer (DESIGN.md decision 6: errors say whose fault).

- `MediaInputError`: an input cannot be opened or read (no such device, unreadable file, a codec `--copy` cannot
  pass through). Its message is one line, fit to print as is.
- `BitstreamError`: codec data that does not parse (a truncated avcC, a length prefix that runs past the end).
- `LocError`: object properties that break draft-ietf-moq-loc-04 (a TIMESTAMP carrying bytes, a TIMESCALE of 0).
- `CatalogError`: a catalog that is not valid JSON, lacks a required field, or has a version we do not speak.
"""

from __future__ import annotations

from moq.errors import MoqError


class MediaError(MoqError):
    """Base of every error the media layer raises on purpose."""


class MediaInputError(MediaError):
    """An input cannot be opened or read; the message is one line, e.g. "no such input device: /dev/video0"."""


class BitstreamError(MediaError, ValueError):
    """Codec data that does not parse."""


class LocError(MediaError, ValueError):
    """Object properties that break draft-ietf-moq-loc-04."""


class CatalogError(MediaError, ValueError):
    """A catalog that breaks the MSF catalog rules (missing required field, bad JSON, unknown version)."""
