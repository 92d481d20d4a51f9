"""Read a torch zip checkpoint (``data.pkl`` + tensor storages) without running what it names.

A YOLOv5 ``.pt`` is a pickled ``Model`` object: loading it the ordinary way imports and calls
whatever globals the pickle names, so a crafted file runs code. Here a restricted unpickler
resolves only:

- tensors, through torch's own ``_rebuild_tensor_v2`` on storages read from the archive;
- plain containers (``collections.OrderedDict``, ``set``);
- module classes (YOLOv5's ``models.*``, ``torch.nn.modules.*``): an inert stand-in class of
  the same name that only records its attributes; nothing of theirs is imported.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) stops the load
before anything is built from it, with one line naming it.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from inspectd.errors import InspectdError

# Storage classes torch.save names, with the dtype their bytes hold.
_STORAGE_DTYPES = {
    "HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
MAX_PICKLE_BYTES = 64 << 20
# Modules whose classes may appear, as stand-ins only (never imported).
_STAND_IN_PREFIXES = ("models.", "torch.nn.modules.")


class StandIn:
    """An inert object in place of a pickled class instance: it keeps the attributes the pickle
    sets (``__dict__`` via BUILD) and the constructor arguments, and has no behaviour."""

    _pickled_name = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self._pickled_args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_pickled_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in {self._pickled_name}>"


class _StorageType:
    """Marker for ``torch.FloatStorage`` etc.: only persistent_load uses it, to learn the dtype."""

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
    # requires_grad, backward hooks and metadata are dropped: a weight file needs none of them.
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _Refused("a tensor is built from something that is not a storage of the archive")
    if not (isinstance(offset, int) and _ints(size) and _ints(stride) and len(size) == len(stride)):
        raise _Refused("a tensor has a malformed size or stride")
    try:
        return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False,
                                               collections.OrderedDict())
    except RuntimeError as exc:  # e.g. a view past the end of its storage
        raise _Refused(f"a tensor does not fit its storage ({str(exc).splitlines()[0]})") from None


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise _Refused("a parameter wraps something that is not a tensor")
    return data


def _ints(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and all(isinstance(v, int) and v >= 0 for v in x)


class _Refused(Exception):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.storage.TypedStorage] = {}
        self._stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full == "collections.OrderedDict":
            return collections.OrderedDict
        if full in ("builtins.set", "__builtin__.set"):
            return set
        if full == "torch._utils._rebuild_tensor_v2":
            return _rebuild_tensor
        if full == "torch._utils._rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module.startswith(_STAND_IN_PREFIXES) and name.isidentifier() and name[:1].isupper():
            if full not in self._stand_ins:
                self._stand_ins[full] = type(name, (StandIn,), {
                    "_pickled_name": full, "__module__": "inspectd.model.safe_pickle.stand_in"})
            return self._stand_ins[full]
        raise _Refused(f"it names {full}, which a weights file has no use for (only tensors, "
                       f"containers and model classes are read; nothing was run)")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise _Refused(f"unexpected persistent id {str(pid)[:60]}")
        _, stype, key, _location, numel = pid
        if key in self._storages:
            return self._storages[key]
        record = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(record)
        except KeyError:
            raise _Refused(f"tensor data {record} is missing from the archive") from None
        itemsize = torch.empty((), dtype=stype.dtype).element_size()
        # torch.save stores records uncompressed; a compressed one could expand without bound.
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > numel * itemsize + 64:
            raise _Refused(f"tensor data {record} is compressed or larger than its tensor (not as torch writes it)")
        raw = self._archive.read(record)
        if len(raw) < numel * itemsize:
            raise _Refused(f"tensor data {record} is truncated ({len(raw)} bytes, {numel * itemsize} expected)")
        flat = torch.frombuffer(bytearray(raw[:numel * itemsize]), dtype=stype.dtype) if numel else \
            torch.empty(0, dtype=stype.dtype)
        storage = torch.storage.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=stype.dtype,
                                             _internal=True)
        self._storages[key] = storage
        return storage


def load_torch_zip(path: str | Path) -> Any:
    """The object tree of a torch zip checkpoint, with stand-ins for every class it names.

    Raises InspectdError (one line) for a file that is not a torch zip archive, is truncated,
    or names anything outside tensors, containers and model classes.
    """
    path = Path(path)
    if not path.is_file():
        raise InspectdError(f"checkpoint {path} not found")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise InspectdError(f"checkpoint {path} is damaged or truncated ({exc})") from None
        raise InspectdError(f"checkpoint {path} is not a torch zip archive ({exc}); "
                            "legacy (pre-1.6) torch files are not read") from None
    with archive:
        pkls = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise InspectdError(f"checkpoint {path} is a zip file but not a torch checkpoint (no data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        if archive.getinfo(pkls[0]).file_size > MAX_PICKLE_BYTES:
            raise InspectdError(f"checkpoint {path}: its data.pkl is over {MAX_PICKLE_BYTES >> 20} MiB "
                                "(a YOLOv5 model's is well under 1 MiB)")
        try:
            with archive.open(pkls[0]) as f:
                return _RestrictedUnpickler(f, archive, prefix).load()
        except _Refused as exc:
            raise InspectdError(f"checkpoint {path} refused: {exc}") from None
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError,
                AttributeError, IndexError, KeyError, OSError, RecursionError, MemoryError) as exc:
            raise InspectdError(f"checkpoint {path} is damaged or truncated "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
