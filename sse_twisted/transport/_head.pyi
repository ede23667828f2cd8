def parse_head(
    names: dict[bytes | str, bytes],
    data: bytes,
    max_line: int,
    max_size: int,
    max_headers: int,
) -> tuple[bytes, bytes, bytes, dict[bytes, list[bytes]], bytes] | None: ...
