"""Delete expired exports: every object under ``exports/<owner>/<id>/`` once the export's ``expires_ms`` passed.

An export directory without a readable ``status.json`` (a crash between objects, a foreign file) is deleted once
its id's creation stamp is older than ``orphan_after_ms``; keys that are not export keys at all are left alone
and reported.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from bv_pipeline.storage.exports import (
    EXPORTS_PREFIX,
    STATUS_NAME,
    ExportError,
    ExportStatus,
    export_created_ms,
    parse_export_key,
)
from bv_pipeline.storage.interfaces import ObjectStore

_log = logging.getLogger(__name__)


@dataclass
class CleanupResult:
    exports_deleted: list[str] = field(default_factory=list)  # export ids
    objects_deleted: int = 0
    exports_kept: int = 0
    foreign_keys: list[str] = field(default_factory=list)  # under exports/ but not an export's object


def cleanup_exports(store: ObjectStore, *, now_ms: int, orphan_after_ms: int) -> CleanupResult:
    result = CleanupResult()
    by_export: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in store.list(f"{EXPORTS_PREFIX}/"):
        parsed = parse_export_key(key)
        if parsed is None:
            result.foreign_keys.append(key)
            continue
        by_export[(parsed[0], parsed[1])].append(key)
    for (owner, export_id), keys in sorted(by_export.items()):
        if not _expired(store, owner, export_id, keys, now_ms, orphan_after_ms):
            result.exports_kept += 1
            continue
        # The status goes last: an interrupted cleanup leaves a status that still says "expired".
        for key in sorted(keys, key=lambda k: k.endswith("/" + STATUS_NAME)):
            store.delete(key)
            result.objects_deleted += 1
        result.exports_deleted.append(export_id)
    return result


def _expired(
    store: ObjectStore, owner: str, export_id: str, keys: list[str], now_ms: int, orphan_after_ms: int
) -> bool:
    status_key = f"{EXPORTS_PREFIX}/{owner}/{export_id}/{STATUS_NAME}"
    if status_key in keys:
        try:
            return ExportStatus.from_json(store.get(status_key)).expires_ms <= now_ms
        except (KeyError, ExportError) as exc:
            _log.warning("export %s: unreadable status (%s); treating it as an orphan", export_id, exc)
    return export_created_ms(export_id) + orphan_after_ms <= now_ms
