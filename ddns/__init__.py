"""ddns: a Dynamic DNS service where every change is a Git commit and BIND serves the result."""
from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """A shipped directory (``templates``, ``zones-repo``, ``hooks``).

    Installed, it sits inside the package; in a source checkout, beside it.
    """
    installed = _PACKAGE_DIR / "_data" / name
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / name
