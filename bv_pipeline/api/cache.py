"""A thread-safe LRU cache bounded by bytes, for cold-tier footers and row-group ranges.

Cold objects are immutable once verified (a re-archive writes a new checksum and the manifest changes), so cached
ranges never need invalidation beyond eviction; keys include the object's size as a cheap version guard.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


def _cost(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    nbytes = getattr(value, "nbytes", None)  # numpy / arrow objects, parsed footers
    if isinstance(nbytes, int):
        return nbytes
    serialized_size = getattr(value, "serialized_size", None)  # pyarrow FileMetaData
    if isinstance(serialized_size, int):
        return serialized_size * 4  # the parsed form is several times larger than its thrift bytes
    return sys.getsizeof(value)


class ByteLRU:
    """``get``/``put`` mapping whose total cost stays under ``max_bytes``; also usable as a MutableMapping-lite."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.current_bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, cost: int | None = None) -> None:
        """Insert ``value``; ``cost`` (bytes) defaults to an estimate from the value's type."""
        cost = _cost(value) if cost is None else cost
        if cost > self.max_bytes:
            return  # never evict everything for one oversized entry
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.current_bytes -= old[1]
            self._data[key] = (value, cost)
            self.current_bytes += cost
            while self.current_bytes > self.max_bytes and self._data:
                _, (_, c) = self._data.popitem(last=False)
                self.current_bytes -= c

    # Mapping-style access so the cache can be handed to code expecting a dict.
    def __getitem__(self, key: Hashable) -> Any:
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.put(key, value)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.current_bytes = 0
