"""Small private files mapped into every Apache process: shared memory that every child and
thread of the machine's Apache sees at once (the lockout's failure marks and checks in
flight, the sessions' logout epoch). Nothing here imports ``mod_python``."""

from __future__ import annotations

import mmap
import os
import stat


def map_private_file(path: str, length: int) -> tuple[mmap.mmap, int]:
    """``path`` mapped shared and read-write, grown to ``length`` bytes if shorter, and its
    open descriptor (the caller keeps it, for ``lockf``, or closes it: the mapping stays).

    The file is created mode 0600, never followed through a symbolic link, and refused
    (OSError) unless it is a regular file of this user that nobody else can write: another
    local user must not plant or read what it holds.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            raise OSError(f"{path} is not a private file of this user")
        if st.st_size < length:
            os.ftruncate(fd, length)
        return mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE), fd
    except BaseException:
        os.close(fd)
        raise
