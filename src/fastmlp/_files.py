"""Model files: written so that a crash never costs the file that was there, and read
from strangers without trusting them.

atomic_write(path, write) writes into a temporary file in the target's directory, flushes
and fsyncs it, renames it over the target (one atomic step on POSIX and Windows) and
fsyncs the directory: at any instant the path holds the complete old file or the complete
new one. A failure removes the temporary file; one left by a killed process (its name
holds the writer's pid) is removed by the next save to that path.

check_npz and check_json validate an archive and its JSON header before anything large is
allocated: member names, dtypes, sizes, total declared bytes, header size and nesting.
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


# -- reading archives from strangers --------------------------------------------------------

MAX_HEADER_BYTES = 1 << 20  # the JSON header of a model file
MAX_JSON_DEPTH = 8


def check_npz(path, allowed, max_bytes):
    """Check an .npz archive before any array is read: every member is `<name>.npy` with
    allowed(name) true, a plain .npy header (no object dtype, no pickle), and a size that
    agrees with its header; the arrays' declared bytes total at most max_bytes. Returns
    {name: (dtype, shape)}; ValueError naming the problem otherwise. Reads only the zip
    directory and the .npy headers."""
    import zipfile

    import numpy as np

    declared = 0
    members = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy") or "/" in name or not allowed(name[:-4]):
                raise ValueError(f"unexpected member {name!r}")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"{name}: .npy version {version} is not supported")
                shape, fortran, dtype = read_header(member, max_header_size=10000)
                header_end = member.tell()
            if dtype.hasobject or dtype.kind not in "biufU":
                raise ValueError(f"{name}: dtype {dtype} is not allowed")
            if fortran:
                raise ValueError(f"{name}: Fortran-ordered arrays are not expected")
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if any(d < 0 for d in shape) or info.file_size != header_end + size:
                raise ValueError(f"{name}: its header declares {shape} {dtype}, which does "
                                 f"not match its {info.file_size} bytes")
            declared += size
            if declared > max_bytes:
                raise ValueError(f"the arrays declare more than max_bytes={max_bytes} bytes")
            members[name[:-4]] = (dtype, tuple(shape))
    return members


def check_json(text, max_bytes=MAX_HEADER_BYTES, max_depth=MAX_JSON_DEPTH):
    """json.loads of a header from a stranger: size and nesting bounded."""
    import json

    if len(text) > max_bytes:
        raise ValueError(f"the header has {len(text)} characters, more than {max_bytes}")
    value = json.loads(text)

    def depth(v, level):
        if level > max_depth:
            raise ValueError(f"the header nests deeper than {max_depth} levels")
        if isinstance(v, dict):
            for item in v.values():
                depth(item, level + 1)
        elif isinstance(v, list):
            for item in v:
                depth(item, level + 1)

    depth(value, 0)
    return value
