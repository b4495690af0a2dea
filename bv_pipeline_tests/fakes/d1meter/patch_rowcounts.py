"""Apply Cloudflare's SQLite row-count patch to an SQLite amalgamation (``sqlite3.c``).

Cloudflare workerd carries ``patches/sqlite/0001-row-counts-plain.patch`` (derived from libSQL's row counters):
with it, ``sqlite3_stmt_status(stmt, 1025 | 1026)`` returns the rows read / rows written that Durable Objects
SQLite, and so D1, reports and bills. Upstream applies the patch to SQLite's source tree; this script makes the
same edits on the amalgamation (checked hunk by hunk against workerd's patch as of its SQLite 3.53.4 upgrade,
August 2026, including "don't count rows written to temporary (ephemeral) tables"). Each edit is anchored on the same source context as the upstream hunk and every
anchor must match exactly once, so a changed SQLite fails loudly instead of counting wrongly.

Usage: ``python3 patch_rowcounts.py sqlite3.c out.c`` (called by ``build.sh``).
"""

from __future__ import annotations

import sys

R = "p->aLibsqlCounter[LIBSQL_STMTSTATUS_ROWS_READ - LIBSQL_STMTSTATUS_BASE]"
W = "p->aLibsqlCounter[LIBSQL_STMTSTATUS_ROWS_WRITTEN - LIBSQL_STMTSTATUS_BASE]"

EDITS = [
    # (anchor, replacement); anchor must occur once
    (
        "  u32 aCounter[9];        /* Counters used by sqlite3_stmt_status() */\n",
        "  u32 aCounter[9];        /* Counters used by sqlite3_stmt_status() */\n  u32 aLibsqlCounter[3];\n",
    ),
    # OP_Count (exact count): += nEntry
    (
        "    rc = sqlite3BtreeCount(db, pCrsr, &nEntry);\n    if( rc ) goto abort_due_to_error;\n",
        f"    rc = sqlite3BtreeCount(db, pCrsr, &nEntry);\n    {R} += nEntry;\n    if( rc ) goto abort_due_to_error;\n",
    ),
    # OP_SeekGE/GT/LE/LT
    (
        "      goto seek_not_found;\n    }\n  }\n#ifdef SQLITE_TEST\n  sqlite3_search_count++;\n#endif\n  if( oc>=OP_SeekGE ){",
        f"      goto seek_not_found;\n    }}\n  }}\n  {R}++;\n#ifdef SQLITE_TEST\n  sqlite3_search_count++;\n#endif\n  if( oc>=OP_SeekGE ){{",
    ),
    # OP_SeekRowid / OP_NotExists
    (
        "  VdbeBranchTaken(res!=0,2);\n  pC->seekResult = res;\n  if( res!=0 ){\n",
        f"  VdbeBranchTaken(res!=0,2);\n  pC->seekResult = res;\n  {R}++;\n  if( res!=0 ){{\n",
    ),
    # OP_Insert
    (
        "  assert( (pOp->p5 & OPFLAG_LASTROWID)==0 || (pOp->p5 & OPFLAG_NCHANGE)!=0 );\n  if( pOp->p5 & OPFLAG_NCHANGE ){\n    p->nChange++;\n    if( pOp->p5 & OPFLAG_LASTROWID ) db->lastRowid = x.nKey;",
        f"  assert( (pOp->p5 & OPFLAG_LASTROWID)==0 || (pOp->p5 & OPFLAG_NCHANGE)!=0 );\n  if (!pC->isEphemeral) {W}++;\n  if( pOp->p5 & OPFLAG_NCHANGE ){{\n    p->nChange++;\n    if( pOp->p5 & OPFLAG_LASTROWID ) db->lastRowid = x.nKey;",
    ),
    # OP_Delete (only the NCHANGE delete)
    (
        "  /* Invoke the update-hook if required. */\n  if( opflags & OPFLAG_NCHANGE ){\n    p->nChange++;\n    if( db->xUpdateCallback && ALWAYS(pTab!=0) && HasRowid(pTab) ){\n      db->xUpdateCallback(db->pUpdateArg, SQLITE_DELETE,",
        f"  /* Invoke the update-hook if required. */\n  if( opflags & OPFLAG_NCHANGE ){{\n    if (!pC->isEphemeral) {W}++;\n    p->nChange++;\n    if( db->xUpdateCallback && ALWAYS(pTab!=0) && HasRowid(pTab) ){{\n      db->xUpdateCallback(db->pUpdateArg, SQLITE_DELETE,",
    ),
    # OP_Last
    (
        "  rc = sqlite3BtreeLast(pCrsr, &res);\n  pC->nullRow = (u8)res;\n  pC->deferredMoveto = 0;\n  pC->cacheStatus = CACHE_STALE;\n  if( rc ) goto abort_due_to_error;\n",
        f"  rc = sqlite3BtreeLast(pCrsr, &res);\n  pC->nullRow = (u8)res;\n  pC->deferredMoveto = 0;\n  pC->cacheStatus = CACHE_STALE;\n  if( rc ) goto abort_due_to_error;\n  {R}++;\n",
    ),
    # OP_Rewind (and SorterSort, which shares the case)
    (
        "    rc = sqlite3BtreeFirst(pCrsr, &res);\n    pC->deferredMoveto = 0;\n    pC->cacheStatus = CACHE_STALE;\n  }\n  if( rc ) goto abort_due_to_error;\n  pC->nullRow = (u8)res;\n",
        f"    rc = sqlite3BtreeFirst(pCrsr, &res);\n    pC->deferredMoveto = 0;\n    pC->cacheStatus = CACHE_STALE;\n  }}\n  if( rc ) goto abort_due_to_error;\n  pC->nullRow = (u8)res;\n  {R}++;\n",
    ),
    # OP_Next / OP_Prev (next_tail)
    (
        "    pC->nullRow = 0;\n    p->aCounter[pOp->p5]++;\n",
        f"    pC->nullRow = 0;\n    p->aCounter[pOp->p5]++;\n    {R}++;\n",
    ),
    # OP_IdxInsert
    (
        "  if( pOp->p5 & OPFLAG_NCHANGE ) p->nChange++;\n  assert( pC->eCurType==CURTYPE_BTREE );\n  assert( pC->isTable==0 );\n",
        f"  if( pOp->p5 & OPFLAG_NCHANGE ) p->nChange++;\n  if (!pC->isEphemeral) {W}++;\n  assert( pC->eCurType==CURTYPE_BTREE );\n  assert( pC->isTable==0 );\n",
    ),
    # OP_Clear
    (
        "  if( pOp->p3 ){\n    p->nChange += nChange;\n",
        f"  if( pOp->p3 ){{\n    p->nChange += nChange;\n    {W} += nChange;\n",
    ),
    # OP_VNext
    (
        "  rc = pModule->xNext(pCur->uc.pVCur);\n  sqlite3VtabImportErrmsg(p, pVtab);\n  if( rc ) goto abort_due_to_error;\n",
        f"  rc = pModule->xNext(pCur->uc.pVCur);\n  sqlite3VtabImportErrmsg(p, pVtab);\n  if( rc ) goto abort_due_to_error;\n  {R}++;\n",
    ),
    # OP_VUpdate
    (
        "        p->errorAction = ((pOp->p5==OE_Replace) ? OE_Abort : pOp->p5);\n      }\n    }else{\n      p->nChange++;\n",
        f"        p->errorAction = ((pOp->p5==OE_Replace) ? OE_Abort : pOp->p5);\n      }}\n    }}else{{\n      {W}++;\n      p->nChange++;\n",
    ),
    # sqlite3_stmt_status: read the extension counters
    (
        "  }else{\n    v = pVdbe->aCounter[op];\n    if( resetFlag ) pVdbe->aCounter[op] = 0;\n  }\n",
        "  }else if( op>=LIBSQL_STMTSTATUS_BASE ){\n    v = pVdbe->aLibsqlCounter[op - LIBSQL_STMTSTATUS_BASE];\n"
        "    if( resetFlag ) pVdbe->aLibsqlCounter[op - LIBSQL_STMTSTATUS_BASE] = 0;\n"
        "  }else{\n    v = pVdbe->aCounter[op];\n    if( resetFlag ) pVdbe->aCounter[op] = 0;\n  }\n",
    ),
    (
        "#define SQLITE_STMTSTATUS_MEMUSED           99\n",
        "#define SQLITE_STMTSTATUS_MEMUSED           99\n#define LIBSQL_STMTSTATUS_BASE              1024\n"
        "#define LIBSQL_STMTSTATUS_ROWS_READ         LIBSQL_STMTSTATUS_BASE + 1\n"
        "#define LIBSQL_STMTSTATUS_ROWS_WRITTEN      LIBSQL_STMTSTATUS_BASE + 2\n",
    ),
]


def patch(text: str) -> str:
    for anchor, repl in EDITS:
        n = text.count(anchor)
        if n != 1:
            raise SystemExit(f"anchor matched {n} times: {anchor[:80]!r}")
        text = text.replace(anchor, repl)
    return text


def main(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as f:
        text = patch(f.read())
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)
    print("patched", len(EDITS), "sites")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
