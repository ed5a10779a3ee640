"""Test helpers for applications and for this package: fake providers and servers.

Everything here is real code that runs in-process or over loopback HTTP; none
of it reaches a real vendor.
"""

__all__: list[str] = []
