"""Model files: written so that a crash never costs the file that was there, and read
from strangers without trusting them.

atomic_write(path, write) writes into a temporary file in the target's directory, flushes
and fsyncs it, renames it over the target (one atomic step on POSIX and Windows) and
fsyncs the directory: at any instant the path holds the complete old file or the complete
new one. A failure removes the temporary file; one left by a killed process (its name
holds the writer's pid) is removed by the next save to that path.

check_npz and check_json validate an archive and its JSON header before anything large is
allocated: member names, dtypes, sizes, total declared bytes, header size and nesting. They
accept only what np.savez writes (uncompressed members, flat .npy headers, an archive that
starts at the file's first byte), so that every error is a ValueError (or a BadZipFile,
OSError, EOFError) and every size np.load will allocate is one the file's bytes back.
"""

from __future__ import annotations

import math
import os
import re
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
MAX_NPY_HEADER_BYTES = 10000  # np.load's own limit (its max_header_size)

# np.load picks the format from the first bytes: a zip only if they are a local file
# header. zipfile finds an archive anywhere before its central directory, so without this
# a file could pass the checks as a zip and then be read by np.load as a .npy or a pickle.
_ZIP_FIRST_BYTES = b"PK\x03\x04"
# zipfile raises RuntimeError (a password is needed) or NotImplementedError for these
_ZIP_ENCRYPTED_OR_PATCHED = 0x1 | 0x20 | 0x40
_LOCAL_HEADER_BYTES = 30  # before the member's name and extra field
# A .npy header as np.save writes it: a flat dict of strings, booleans and tuples of
# non-negative integers. Anything else is refused before ast.literal_eval (which np.load
# uses) sees it: its parser raises RecursionError or MemoryError on deeply nested text.
_NPY_VALUE = r"(?:'[^'\\]{0,64}'|True|False|\(\s*(?:[0-9]{1,20}\s*,\s*)*(?:[0-9]{1,20}\s*)?\))"
_NPY_ENTRY = rf"\s*'[a-z_]{{1,16}}'\s*:\s*{_NPY_VALUE}"
_NPY_HEADER = re.compile(rf"\s*\{{(?:{_NPY_ENTRY}\s*,)*(?:{_NPY_ENTRY})?\s*\}}\s*", re.ASCII)


def check_npz(path, allowed, max_bytes):
    """Check an .npz archive before any array is read: every member is `<name>.npy` with
    allowed(name) true, stored uncompressed within the file, with a plain .npy header (no
    object dtype, no pickle) and a size that agrees with its header; the arrays' declared
    bytes total at most max_bytes; text arrays hold Unicode. Returns {name: (dtype, shape)};
    ValueError naming the problem otherwise. Reads the zip directory, the first bytes of
    each member and the text members."""
    import zipfile

    declared = 0
    members = {}
    with open(path, "rb") as file:
        if file.read(len(_ZIP_FIRST_BYTES)) != _ZIP_FIRST_BYTES:
            raise ValueError("not a zip archive")
        file_size = os.fstat(file.fileno()).st_size
        try:
            archive = zipfile.ZipFile(file)
        except NotImplementedError as exc:  # a zip version above what zipfile reads
            raise ValueError(f"a zip archive zipfile cannot read ({exc})") from None
        with archive:
            for info in archive.infolist():
                name = info.filename
                if not name.endswith(".npy") or "/" in name or not allowed(name[:-4]):
                    raise ValueError(f"unexpected member {name!r}")
                # np.savez stores its members: a compressed one could inflate to far more
                # than the file holds (and zipfile raises NotImplementedError for some)
                if info.compress_type != zipfile.ZIP_STORED or \
                        info.flag_bits & _ZIP_ENCRYPTED_OR_PATCHED:
                    raise ValueError(f"{name}: compressed or encrypted")
                if info.compress_size != info.file_size or info.header_offset < 0 or \
                        info.header_offset + _LOCAL_HEADER_BYTES + info.file_size > file_size:
                    raise ValueError(f"{name}: its declared size {info.file_size} does not fit "
                                     f"in the file")
                with archive.open(info) as member:
                    # a bounded read (magic, version, length, header): the length field
                    # may claim up to 4 GB, and numpy's reader would ask for all of it
                    dtype, shape, fortran, header_end = _npy_header(
                        member.read(12 + MAX_NPY_HEADER_BYTES), name)
                if dtype.hasobject or dtype.kind not in "biufU" or dtype.itemsize == 0:
                    # (an itemsize of 0 would let any number of elements cost no bytes)
                    raise ValueError(f"{name}: dtype {dtype} is not allowed")
                if fortran:
                    raise ValueError(f"{name}: Fortran-ordered arrays are not expected")
                # Python integers: np.prod in int64 wraps around for huge shapes
                size = math.prod(shape) * dtype.itemsize
                if any(d < 0 for d in shape) or info.file_size != header_end + size:
                    raise ValueError(f"{name}: its header declares {shape} {dtype}, which does "
                                     f"not match its {info.file_size} bytes")
                declared += size
                if declared > max_bytes:
                    raise ValueError(f"the arrays declare more than max_bytes={max_bytes} "
                                     f"bytes")
                if dtype.kind == "U":
                    _check_characters(archive, info, header_end, dtype, name)
                members[name[:-4]] = (dtype, tuple(shape))
    return members


def _check_characters(archive, info, header_end, dtype, name):
    """Text arrays hold UCS-4 code units, any 32-bit value: one above U+10FFFF makes
    str() or .tolist() of the array raise SystemError. Scanned in chunks of 1 MiB."""
    import numpy as np

    code_unit = np.dtype(np.uint32).newbyteorder(dtype.str[0])
    with archive.open(info) as member:
        member.read(header_end)
        while chunk := member.read(1 << 20):
            if len(chunk) % 4 or np.frombuffer(chunk, code_unit).max() > 0x10FFFF:
                raise ValueError(f"{name}: text that is not Unicode")


def _npy_header(head, name):
    """(dtype, shape, fortran_order, header bytes) of a .npy member from its first bytes,
    read by numpy's own reader (as np.load will read it) once the text is known to be flat."""
    import io
    import struct

    import numpy as np

    stream = io.BytesIO(head)
    version = np.lib.format.read_magic(stream)
    read_header, length_format = {
        (1, 0): (np.lib.format.read_array_header_1_0, "<H"),
        (2, 0): (np.lib.format.read_array_header_2_0, "<I"),
    }.get(version, (None, None))
    if read_header is None:
        raise ValueError(f"{name}: .npy version {version} is not supported")
    start = stream.tell()
    length_field = stream.read(struct.calcsize(length_format))
    if len(length_field) != struct.calcsize(length_format):
        raise ValueError(f"{name}: its .npy header is cut short")
    (length,) = struct.unpack(length_format, length_field)
    text = stream.read(min(length, MAX_NPY_HEADER_BYTES + 1))
    if length > MAX_NPY_HEADER_BYTES or len(text) != length:
        raise ValueError(f"{name}: its .npy header is cut short or longer than "
                         f"{MAX_NPY_HEADER_BYTES} bytes")
    if not _NPY_HEADER.fullmatch(text.decode("latin1")):
        raise ValueError(f"{name}: its .npy header is not a flat dict")
    stream.seek(start)
    shape, fortran, dtype = read_header(stream, max_header_size=MAX_NPY_HEADER_BYTES)
    return dtype, shape, fortran, stream.tell()


def check_json(text, max_bytes=MAX_HEADER_BYTES, max_depth=MAX_JSON_DEPTH):
    """json.loads of a header from a stranger: size and nesting bounded."""
    import json

    if len(text) > max_bytes:
        raise ValueError(f"the header has {len(text)} characters, more than {max_bytes}")
    try:
        value = json.loads(text)
    except RecursionError:  # the decoder's own guard against "[[[[..." (Python stack)
        raise ValueError(f"the header nests deeper than {max_depth} levels") from None

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
