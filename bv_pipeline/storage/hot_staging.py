"""Staging rows: one sync's new samples for a group of points in one exact, compact JSON text. Pure.

Format (see ``docs/hot-blocks.md``)::

    {"a":1767225600000,"b":[{"p":17,"a":137,"s":60000,"w":2,"t":"..","v":[..]}, {"p":18,...}]}

``b`` holds one block object per point (the ``hot_blocks`` format) with an extra ``"p"``: the point's integer id
when ``encode_staging`` was given ``point_ids`` (compact: the hot tier's ``points.id``), else the point name as a
JSON string. Each block's ``"a"`` is relative to the row's top-level ``"a"`` (the earliest sample time), which
keeps per-point headers short. In SQL::

    SELECT json_extract(pb.value, '$.p') AS point_id, <block_columns_sql("pb.value", base_ts="json_extract(s.body, '$.a')")>
    FROM staging AS s, json_each(s.body, '$.b') AS pb, <block_expand_sql("pb.value")>
    WHERE <block_filter_sql()>
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
import pyarrow as pa

from bv_pipeline.storage.hot_blocks import encode_prepared, prepare_table
from bv_pipeline.storage.hot_blocks_decode import BlockFormatError, decode_objects, samples_table


def encode_staging(samples: pa.Table, point_ids: Mapping[str, int] | None = None) -> str:
    """A SAMPLE_SCHEMA table (any order, unique (point, ts)) -> one staging JSON text.

    With ``point_ids`` every point must be in it and blocks reference the integer id; without, the name."""
    if samples.num_rows == 0:
        return '{"a":0,"b":[]}'
    points, p = prepare_table(samples)
    base = int(p.ts.min())
    parts = []
    lo = 0
    n = len(points)
    while lo < n:
        hi = lo + 1
        while hi < n and points[hi] == points[lo]:
            hi += 1
        name = points[lo]
        if point_ids is not None:
            if name not in point_ids:
                raise KeyError(f"point {name!r} has no id")
            ref = str(int(point_ids[name]))
        else:
            ref = orjson.dumps(name).decode()
        block, _ = encode_prepared(p, lo, hi, extra_head=f'"p":{ref},', anchor_base=base)
        parts.append(block)
        lo = hi
    return f'{{"a":{base},"b":[' + ",".join(parts) + "]}"


def staging_points(text: str | bytes) -> list[int | str]:
    """The point references (ids or names) of a staging row, in block order."""
    return [o["p"] for o in _blocks(text)[1]]


def _blocks(text: str | bytes) -> tuple[int, list[dict]]:
    try:
        obj = orjson.loads(text)
        base, blocks = obj["a"], obj["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BlockFormatError(f"not a staging row: {exc!r}") from None
    if type(base) is not int or not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise BlockFormatError("not a staging row: a must be an integer and b a list of objects")
    return base, blocks


def decode_staging(
    text: str | bytes, point_names: Mapping[int, str] | Sequence[str] | None = None
) -> pa.Table:
    """A staging row -> SAMPLE_SCHEMA table (blocks in row order, samples by time within each block).

    Rows that reference points by id need ``point_names`` (id -> name); rows with names need nothing."""
    base, blocks = _blocks(text)
    names: list[str] = []
    for o in blocks:
        ref = o.get("p")
        if type(ref) is str:
            names.append(ref)
        elif type(ref) is int and point_names is not None:
            try:
                names.append(point_names[ref])
            except (KeyError, IndexError):
                raise KeyError(f"staging row references unknown point id {ref}") from None
        else:
            raise BlockFormatError(f"staging block point reference {ref!r} cannot be resolved to a name")
        if type(o.get("a")) is int:
            o["a"] += base
    ts, value, valid, value_text, counts = decode_objects(blocks)
    return samples_table(names, counts, ts, value, valid, value_text)
