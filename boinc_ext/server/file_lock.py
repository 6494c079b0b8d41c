"""Exclusive, non-blocking locks on open files that exclude threads and processes alike.

Linux open-file-description locks (F_OFD_SETLK) belong to the open file, not to the
process, so two threads of one server that open the same file exclude each other; they
also conflict with the POSIX record locks stock BOINC's file_upload_handler takes, so a
stock handler and ours can share an upload directory. The lock is released when the file
is closed.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct

# struct flock on Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t),
# padded to 8 bytes; l_pid must be 0 for OFD locks.
_FLOCK_FORMAT = "hhqqi4x"


class FileLockError(OSError):
    """The lock could not be taken for a reason other than another holder."""


def try_lock_exclusive(fd: int) -> bool:
    """Locks the whole file open on `fd` for writing; False if someone else holds a lock."""
    request = struct.pack(_FLOCK_FORMAT, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise FileLockError(exc.errno, f"cannot lock file: {exc.strerror}") from None
    return True
