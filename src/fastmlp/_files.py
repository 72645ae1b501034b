"""Writing files so that a crash never costs the file that was there.

atomic_write(path, write) writes into a temporary file in the target's directory, flushes
and fsyncs it, renames it over the target (one atomic step on POSIX and Windows) and
fsyncs the directory: at any instant the path holds the complete old file or the complete
new one. A failure removes the temporary file; one left by a killed process (its name
holds the writer's pid) is removed by the next save to that path.
"""

from __future__ import annotations

import os
import tempfile


def _temporary_prefix(path):
    return f".{os.path.basename(path)}.tmp-"


def _remove_stale_temporaries(directory, prefix):
    """Temporaries of this path whose writing process no longer exists."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue  # another process may be writing it right now
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def atomic_write(path, write):
    """Call write(binary file) and put what it wrote at `path` atomically (see above)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temporary_prefix(path)
    _remove_stale_temporaries(directory, prefix)
    mode = _mode_for(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path!r}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)  # mkstemp's 0600 -> what a plain open() would have given
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path!r} (the file there is "
                                     f"unchanged): {exc.strerror}") from exc
        raise
    _fsync_directory(directory)


def _mode_for(path):
    """The permissions of the file being replaced, else 0666 less the process umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    try:  # the umask without setting it (os.umask would race with other threads)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
