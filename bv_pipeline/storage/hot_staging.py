"""Staging rows: one sync's new samples for a group of points in one exact, compact JSON text. Pure.

Format (see ``docs/hot-blocks.md``)::

    {"a":1767225600000,"s":60000,"w":2,"b":[{"p":17,"a":137,"t":"..","v":[..]}, {"p":18,"a":2210,...}]}

``b`` holds one block object per point (the ``hot_blocks`` format) with an extra ``"p"``: the point's integer id
when ``encode_staging`` was given ``point_ids`` (compact: the hot tier's ``points.id``), else the point name as a
JSON string. To keep the per-point headers short, each block's ``"a"`` is relative to the row's ``"a"`` (the
earliest sample time) and a block without ``"s"``/``"w"`` uses the row's (the most common layout). In SQL::

    SELECT json_extract(pb.value, '$.p') AS point_id, <block_columns_sql("pb.value", row="s.body")>
    FROM staging AS s, json_each(s.body, '$.b') AS pb, <block_expand_sql("pb.value")>
    WHERE <block_filter_sql()>

(``block_select_sql("staging AS s, json_each(s.body, '$.b') AS pb", "json_extract(pb.value, '$.p')",
"pb.value", row="s.body")`` writes exactly that.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import orjson
import pyarrow as pa

from bv_pipeline.storage.gc_pause import gc_paused
from bv_pipeline.storage.hot_blocks import prepare_table
from bv_pipeline.storage.hot_blocks_decode import (
    ID_SAMPLE_SCHEMA,
    BlockFormatError,
    decode_objects,
    samples_table,
)
from bv_pipeline.storage.hot_blocks_encode import block_layouts, encode_runs
from bv_pipeline.storage.samples import SAMPLE_SCHEMA


def encode_staging(samples: pa.Table, point_ids: Mapping[str, int] | None = None) -> str:
    """Samples (any order, unique (point, ts)) -> one staging JSON text.

    ``samples`` is ID_SAMPLE_SCHEMA (blocks reference its ``point_id``) or SAMPLE_SCHEMA: then blocks reference
    ``point_ids[name]`` when ``point_ids`` is given (every point must be in it), else the name."""
    if samples.num_rows == 0:
        return '{"a":0,"s":0,"w":0,"b":[]}'
    points, change, p = prepare_table(samples)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1, [len(points)]])
    default = Counter(block_layouts(p, starts)).most_common(1)[0][0]
    base = int(p.ts.min())
    heads = []
    for key in points.take(pa.array(starts[:-1])).to_pylist():
        if type(key) is int:
            heads.append(f'"p":{key},')
        elif point_ids is not None:
            if key not in point_ids:
                raise KeyError(f"point {key!r} has no id")
            heads.append(f'"p":{int(point_ids[key])},')
        else:
            heads.append(f'"p":{orjson.dumps(key).decode()},')
    blocks = encode_runs(p, starts, heads, base, default)
    return f'{{"a":{base},"s":{default[0]},"w":{default[1]},"b":[' + ",".join(blocks) + "]}"


def staging_points(text: str | bytes) -> list[int | str]:
    """The point references (ids or names) of a staging row, in block order."""
    return [o.get("p") for o in _blocks(text)]


def _blocks(text: str | bytes) -> list[dict]:
    """The row's block objects with absolute ``a`` and the row's ``s``/``w`` filled in."""
    try:
        obj = orjson.loads(text)
        base, step, width, blocks = obj["a"], obj["s"], obj["w"], obj["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BlockFormatError(f"not a staging row: {exc!r}") from None
    if not all(type(x) is int for x in (base, step, width)) or not isinstance(blocks, list):
        raise BlockFormatError("not a staging row: a, s, w must be integers and b a list")
    for o in blocks:
        if not isinstance(o, dict) or type(o.get("a")) is not int:
            raise BlockFormatError("not a staging row: every block needs an integer a")
        o["a"] += base
        o.setdefault("s", step)
        o.setdefault("w", width)
    return blocks


def _point_names(blocks: list[dict], point_names: Mapping[int, str] | Sequence[str] | None) -> list[str]:
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
    return names


def decode_staging(
    text: str | bytes, point_names: Mapping[int, str] | Sequence[str] | None = None
) -> pa.Table:
    """A staging row -> SAMPLE_SCHEMA table (blocks in row order, samples by time within each block).

    Rows that reference points by id need ``point_names`` (id -> name); rows with names need nothing."""
    with gc_paused():  # parsed JSON holds no cycles: collector passes over it are pure overhead
        blocks = _blocks(text)
        names = _point_names(blocks, point_names)
        ts, value, valid, value_text, counts = decode_objects(blocks)
    return samples_table(SAMPLE_SCHEMA, names, counts, ts, value, valid, value_text)


def decode_staging_by_id(text: str | bytes) -> pa.Table:
    """A staging row whose blocks reference integer point ids -> ID_SAMPLE_SCHEMA table."""
    with gc_paused():
        blocks = _blocks(text)
        ids = [o.get("p") for o in blocks]
        if not all(type(i) is int for i in ids):
            raise BlockFormatError("staging row references points by name, not by id")
        ts, value, valid, value_text, counts = decode_objects(blocks)
    return samples_table(ID_SAMPLE_SCHEMA, ids, counts, ts, value, valid, value_text)
