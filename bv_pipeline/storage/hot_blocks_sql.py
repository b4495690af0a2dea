"""SQL that expands hot-tier blocks (``hot_blocks``) into one row per sample, for SQLite and D1 views. Pure.

The pattern, for a table ``h`` with a block column::

    SELECT h.point_id, <block_columns_sql("h.block")>
    FROM hour_blocks AS h, <block_expand_sql("h.block")>
    WHERE <block_filter_sql()>

``block_select_sql`` writes that whole SELECT. Columns:

- ``ts_ms`` INTEGER: exact epoch milliseconds.
- ``value`` REAL: the numeric value, NULL for null/text samples; scaled-decimal blocks compute ``(o + v) * 1.0 / k``
  exactly as the decoder does. Exact for float64 blocks. In float32 blocks
  (``"f":1``) SQL shows the *shortest decimal* of the float32 (1.61), whereas the decoder returns
  float64(float32(1.61)) = 1.6100000143051147, the value ACE sent: they differ by less than half a float32 ulp
  (relative 6e-8). Infinities are +/-Inf; a NaN (never produced by ace_parse) shows as NULL.
- ``value_text`` TEXT: the text value (dictionary entries resolved), NULL otherwise.

Every ``json_each`` element is one D1 row read; nothing else here reads rows.
"""

from __future__ import annotations

from bv_pipeline.storage.hot_blocks import ALPHABET, MAX_WIDTH


def _x(block: str, path: str) -> str:
    return f"json_extract({block}, '{path}')"


def block_expand_sql(block: str, alias: str = "e") -> str:
    """The FROM item that yields one row per slot of ``block`` (a column or any JSON text expression)."""
    return f"json_each({block}, '$.v') AS {alias}"


def block_filter_sql(alias: str = "e") -> str:
    """The WHERE term that drops empty grid slots (``null`` elements; a null the source sent is ``[]``)."""
    return f"{alias}.type <> 'null'"


def _layout(block: str, key: str, row: str | None) -> str:
    """Block field ``s`` or ``w``; in a staging row a block without it takes the row's."""
    own = _x(block, f"$.{key}")
    return f"COALESCE({own}, {_x(row, f'$.{key}')})" if row else own


def block_ts_sql(block: str, alias: str = "e", row: str | None = None) -> str:
    """Epoch ms of the slot: ``a + key*s + code(key)``. For a block inside a staging row pass the row's JSON
    expression as ``row``: its ``a`` is added and its ``s``/``w`` are the defaults."""
    w = _layout(block, "w", row)
    t = _x(block, "$.t")
    digits = " + ".join(
        f"CASE WHEN {w} > {c} THEN (instr('{ALPHABET}', substr({t}, {alias}.key * {w} + {c + 1}, 1)) - 1)"
        f" * {64**c} ELSE 0 END"
        for c in range(MAX_WIDTH)
    )
    base = f"{_x(row, '$.a')} + " if row else ""
    return f"({base}{_x(block, '$.a')} + {alias}.key * {_layout(block, 's', row)} + {digits})"


def block_value_sql(block: str, alias: str = "e") -> str:
    first = f"json_extract({alias}.value, '$[0]')"
    k = _x(block, "$.k")
    return (
        f"(CASE WHEN {alias}.type IN ('integer', 'real') AND {k} IS NOT NULL"
        f" THEN ({_x(block, '$.o')} + {alias}.value) * 1.0 / {k}"
        f" WHEN {alias}.type = 'real' THEN {alias}.value"
        f" WHEN {alias}.type = 'integer' AND {_x(block, '$.d')} IS NULL THEN CAST({alias}.value AS REAL)"
        f" WHEN {alias}.type = 'array' THEN (CASE json_type({alias}.value, '$[0]')"
        f" WHEN 'real' THEN {first} WHEN 'integer' THEN CAST({first} AS REAL)"
        f" WHEN 'text' THEN (CASE {first} WHEN 'inf' THEN 9e999 WHEN '-inf' THEN -9e999 END) END) END)"
    )


def block_text_sql(block: str, alias: str = "e") -> str:
    return (
        f"(CASE WHEN {alias}.type = 'text' THEN {alias}.value"
        f" WHEN {alias}.type = 'integer' AND {_x(block, '$.d')} IS NOT NULL"
        f" THEN json_extract({block}, '$.d[' || {alias}.value || ']') END)"
    )


def block_columns_sql(block: str, alias: str = "e", row: str | None = None) -> str:
    """``ts_ms, value, value_text`` select-list items for rows from ``block_expand_sql(block, alias)``."""
    return (
        f"{block_ts_sql(block, alias, row)} AS ts_ms, {block_value_sql(block, alias)} AS value, "
        f"{block_text_sql(block, alias)} AS value_text"
    )


def block_select_sql(
    source: str,
    point: str,
    block: str,
    *,
    alias: str = "e",
    where: str | None = None,
    row: str | None = None,
) -> str:
    """``SELECT point, ts_ms, value, value_text FROM source, json_each(...) WHERE ...``: one row per sample.

    ``source`` is a FROM item (``hb_20260101 AS h``), ``point``/``block`` are expressions over it, ``where`` an
    optional extra condition (put block-level filters here so only matching blocks are expanded), ``row`` the
    staging row's JSON expression when ``block`` is a block of a staging row (see ``hot_staging``)."""
    cond = block_filter_sql(alias) + (f" AND ({where})" if where else "")
    return (
        f"SELECT {point} AS point, {block_columns_sql(block, alias, row)} "
        f"FROM {source}, {block_expand_sql(block, alias)} WHERE {cond}"
    )
