"""Files only the service's user may read: the config (push token, OIDC client secret,
webhook secret), the database (secret hashes, sessions) and its -wal / -shm, BIND's rndc key.

Files are created 0600 and directories that hold secrets 0700 whatever the
umask; files an older version left readable by others are narrowed when the
service opens them.
"""
from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def write_new(path: Path, text: str) -> None:
    """Create PATH (it must not exist) with TEXT, readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def make_dir(path: Path) -> None:
    """PATH as a directory only this user may enter."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)


def touch(path: Path) -> None:
    """Create PATH empty with FILE_MODE if it is missing (so what opens it next inherits no wider mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


def narrow(path: Path) -> None:
    """Take group and other permissions off PATH if it exists and is this user's."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        path.chmod(st.st_mode & 0o700)
