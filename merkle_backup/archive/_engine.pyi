from collections.abc import Callable
from typing import Any

class Walker:
    def __init__(
        self,
        max_entries: int,
        max_path_length: int,
        max_entry_size: int,
        *,
        leaves: list[bytes] | None = None,
        hash: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> None: ...
    def entries(self, buf: bytes, off: int, count: int, /) -> tuple[
        list[tuple[str, bytes, None]], int, int]: ...
    def seal(self, buf: bytes, off: int, count: int, /) -> tuple[int, int]: ...

def write_records(
    items: list[bytes], found: list[tuple[bytes, bytes | None]] | None,
    write: Callable[[bytes], Any], hash: Callable[[Any], Any], /,
) -> tuple[Any, Any]: ...

class LeafPass:
    def __init__(self, hash: Callable[[Any], Any]) -> None: ...
    def records(self, records: list[bytes], check: bool, /) -> tuple[
        list[bytes | None], list[int]]: ...
    def root(self) -> tuple[bytes, int]: ...

def table_order(
    items: list[bytes], bucket_scope: bytes, preferred_suffix: bytes, /,
) -> tuple[list[int], list[tuple[int, int]], int]: ...

def take_equal(
    items: list[bytes], taken: list[bytes], start: int, seen: bytearray, /,
) -> int: ...
