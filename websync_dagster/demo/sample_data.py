"""A realistic, deterministic sample of the four tables, with prod drifted from dev.

``populate`` fills a dev and a prod database created with ``sample_schema.schema_ddl`` and returns
the facts the tests and the demo rely on (which rows clash, which ones prod must refuse, ...).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from websync_dagster.demo.sample_schema import CATEGORIES, PIPELINE_STAGES, PROD_BRANCHES, schema_ddl

FRENCH = ["le", "tribunal", "de", "première", "instance", "a", "statué", "sur", "la", "demande", "du", "requérant", "conformément", "aux", "dispositions", "du", "code", "des", "obligations", "et", "des", "contrats", "attendu", "que", "la", "cour", "de", "cassation", "considère", "la", "jurisprudence", "constante", "en", "matière", "de", "responsabilité", "civile", "délictuelle", "contrat", "de", "bail", "commercial", "résiliation", "préavis", "indemnité", "d'éviction", "procédure", "d'appel", "délai", "de", "recours", "décret", "loi", "organique", "article", "alinéa", "société", "anonyme", "à", "responsabilité", "limitée", "assemblée", "générale", "extraordinaire"]
ARABIC = ["المحكمة", "الابتدائية", "قضت", "بقبول", "الدعوى", "شكلا", "ورفضها", "أصلا", "وفقا", "لأحكام", "مجلة", "الالتزامات", "والعقود", "حيث", "أن", "محكمة", "التعقيب", "اعتبرت", "أن", "المسؤولية", "المدنية", "التقصيرية", "عقد", "الكراء", "التجاري", "فسخ", "الإعلام", "المسبق", "غرامة", "الحرمان", "إجراءات", "الاستئناف", "أجل", "الطعن", "مرسوم", "قانون", "أساسي", "فصل", "فقرة", "شركة", "خفية", "الاسم", "ذات", "مسؤولية", "محدودة"]

TRICKY_TEXT = (
    'Ligne 1, avec "guillemets", des virgules, et un antislash \\ ici.\n'
    "\\.\n"
    "Ligne après une ligne qui vaut exactement \\. ;\ttabulation\r\n"
    "نص عربي مع فاصلة، وعلامة استفهام؟\n"
    "\\N n'est pas NULL, \\\\ deux antislashs, fin sans retour"
)
DEV_ONLY_COLUMNS = {"web_sources": ("category",), "web_pages": ("crawl_debug",)}
NOW = datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _prose(rng: random.Random, size: int) -> str:
    """Word-like text that compresses like real prose (Arabic and French paragraphs)."""
    words: list[str] = []
    total = 0
    while total < size:
        paragraph = rng.choices(ARABIC if rng.random() < 0.4 else FRENCH, k=rng.randint(30, 90))
        words.append(" ".join(paragraph) + ".\n")
        total += sum(len(w) + 1 for w in paragraph)
    return "".join(words)[:size]


def _vector(rng: random.Random, dim: int) -> str:
    return "[" + ",".join(f"{rng.uniform(-1, 1):.6f}" for _ in range(dim)) + "]"


@dataclass
class SampleFacts:
    """What the sample holds, so that tests can check values rather than counts."""

    dev_counts: dict[str, int] = field(default_factory=dict)
    prod_counts: dict[str, int] = field(default_factory=dict)
    already_in_prod: dict[str, list[str]] = field(default_factory=dict)
    prod_only: dict[str, list[str]] = field(default_factory=dict)
    clash_other_key: dict[str, str] = field(default_factory=dict)  # table -> dev id clashing on another key
    rejected: dict[str, str] = field(default_factory=dict)  # dev id -> expected reason keyword
    nulled_refs: dict[str, str] = field(default_factory=dict)  # dev id -> column set to NULL
    tricky_kb_id: str = ""
    tricky_page_id: str = ""
    supersede_pair: tuple[str, str] = ("", "")


def create_schemas(dev: psycopg.Connection, prod: psycopg.Connection, *, fts_index: bool = True) -> None:
    dev.execute(schema_ddl("dev", fts_index=fts_index))
    prod.execute(schema_ddl("prod", fts_index=fts_index))


def _copy_rows(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _source(rng: random.Random, n: int, **extra: Any) -> dict[str, Any]:
    row = {
        "id": _uuid(rng), "name": f"Source {n} — مصدر {n}", "base_url": f"https://source{n}.example.tn",
        "description": f"Portail juridique numéro {n}", "language": rng.choice(["ar", "fr", "mixed"]),
        "priority": rng.randint(1, 10), "crawl_frequency": timedelta(hours=6 * (n % 8 + 1)),
        "css_selectors": Jsonb({"content": "article.main", "title": "h1"}),
        "url_patterns": [f"https://source{n}.example.tn/jort/*", "*/arrets/*"],
        "excluded_patterns": ["*/login", '*?q="x,y"'], "max_depth": 3, "max_pages": min(10000, 500 * (n + 1)),
        "follow_links": True, "download_files": n % 2 == 0, "custom_headers": None, "is_active": True,
        "health_status": "healthy", "last_crawl_at": NOW - timedelta(days=n % 30), "total_pages_crawled": 10 * n,
        "avg_response_ms": 120.5 + n, "created_by": None, "created_at": NOW, "updated_at": NOW,
        "seed_urls": [f"https://source{n}.example.tn/"], "categories": ["legislation", "jurisprudence"],
        "rag_enabled": True, "min_word_count": 50, "drive_config": None,
    }
    row.update(extra)
    return row


def _kb(rng: random.Random, n: int, text_bytes: int, **extra: Any) -> dict[str, Any]:
    row = {
        "id": _uuid(rng), "category": rng.choice([c for c in CATEGORIES if c != "doctrine"]),
        "title": f"Document {n} — وثيقة {n}", "description": None,
        "metadata": Jsonb({"sourceId": str(_uuid(rng)), "url": f"https://source1.example.tn/doc/{n}"}),
        "full_text": _prose(rng, text_bytes), "is_indexed": True, "chunk_count": rng.randint(1, 40),
        "language": rng.choice(["fr", "ar"]), "tags": ["droit", "تونس"], "version": 1, "is_active": True,
        "branch": rng.choice(PROD_BRANCHES), "embedding": None, "quality_score": round(rng.random(), 3),
        "pipeline_stage": rng.choice(PIPELINE_STAGES), "supersedes_id": None, "superseded_by_id": None,
        "uploaded_by": None, "taxonomy_code": "civ", "bulk_import_id": None, "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(extra)
    return row


def _page(rng: random.Random, n: int, source_id: uuid.UUID, text_bytes: int, **extra: Any) -> dict[str, Any]:
    url = f"https://source.example.tn/page/{n}"
    row = {
        "id": _uuid(rng), "web_source_id": source_id, "knowledge_base_id": None, "url": url,
        "url_hash": hashlib.sha256(url.encode()).hexdigest(), "canonical_url": url,
        "title": f"Arrêt n° {n} — قرار عدد {n}", "content_hash": f"{rng.getrandbits(64):016x}",
        "extracted_text": _prose(rng, rng.randint(text_bytes // 2, text_bytes * 3 // 2)),
        "word_count": rng.randint(100, 5000), "meta_keywords": ["droit", "arrêt, civil", 'a "quoted" one'],
        "structured_data": Jsonb({"@type": "Article", "n": n}), "linked_files": Jsonb([]),
        "status": "crawled", "is_indexed": False, "chunks_count": 0, "freshness_score": 0.5,
        "site_structure": None, "last_crawled_at": NOW, "last_changed_at": None, "created_at": NOW,
        "updated_at": NOW, "crawl_debug": Jsonb({"ms": 42}),
    }
    row.update(extra)
    return row


def _file(rng: random.Random, n: int, page: dict[str, Any], **extra: Any) -> dict[str, Any]:
    row = {
        "id": _uuid(rng), "web_page_id": page["id"], "web_source_id": page["web_source_id"],
        "knowledge_base_id": page["knowledge_base_id"], "url": f"{page['url']}/piece-{n}.pdf",
        "filename": f"piece-{n}.pdf", "file_type": "pdf", "minio_path": f"web-files/{n}.pdf",
        "file_size": 10_000 + n, "content_hash": f"{n:064x}", "text_content": _prose(rng, 2000),
        "page_count": 1 + n % 12, "is_downloaded": True, "is_indexed": False, "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(extra)
    return row


def _prod_copy(row: dict[str, Any], drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    copy = {k: v for k, v in row.items() if k not in drop}
    copy.update(changes)
    return copy


def populate(
    dev: psycopg.Connection,
    prod: psycopg.Connection,
    *,
    pages: int = 200,
    kb_docs: int = 60,
    files: int = 80,
    text_bytes: int = 3000,
    seed: int = 7,
) -> SampleFacts:
    """Fill dev and prod (schemas already created) and say what a sync must do with each row."""
    rng = random.Random(seed)
    facts = SampleFacts()

    users = [{"id": _uuid(rng), "email": f"user{i}@example.tn", "created_at": NOW} for i in range(3)]
    taxonomy = [{"code": c, "label_fr": c, "label_ar": "تصنيف"} for c in ("civ", "pen", "com")]
    dev_imports = [{"id": _uuid(rng), "started_at": NOW}]
    for conn, user_rows in ((dev, users), (prod, users[:1])):
        _copy_rows(conn, "users", user_rows)
        _copy_rows(conn, "legal_taxonomy", taxonomy)
    _copy_rows(dev, "kb_bulk_imports", dev_imports)
    absent_user = users[2]["id"]

    # web_sources: 0 already in prod (prod's values differ), 1 created by a user prod lacks,
    # 4 clashes with a prod-only source on base_url, 5 new; prod also has its own source.
    sources = [_source(rng, n, category="legislation") for n in range(6)]
    sources[1]["created_by"] = absent_user
    prod_sources = [
        _prod_copy(sources[0], drop=("category",), name="Nom modifié en prod", health_status="degraded"),
        _source(rng, 90, base_url=sources[4]["base_url"], name="Same site crawled in prod"),
        _source(rng, 91, name="Prod-only source"),
    ]
    for s in prod_sources:
        s.pop("category", None)
    facts.already_in_prod["web_sources"] = [str(sources[0]["id"])]
    facts.prod_only["web_sources"] = [str(prod_sources[1]["id"]), str(prod_sources[2]["id"])]
    facts.clash_other_key["web_sources"] = str(sources[4]["id"])
    facts.nulled_refs[str(sources[1]["id"])] = "created_by"

    # knowledge_base
    kb = [_kb(rng, n, text_bytes) for n in range(kb_docs)]
    kb[0]["uploaded_by"] = absent_user
    facts.nulled_refs[str(kb[0]["id"])] = "uploaded_by"
    kb[1]["bulk_import_id"] = dev_imports[0]["id"]
    facts.nulled_refs[str(kb[1]["id"])] = "bulk_import_id"
    kb[2].update(category="doctrine")
    facts.rejected[str(kb[2]["id"])] = "knowledge_base_category_check"
    kb[3].update(branch="numerique")
    facts.rejected[str(kb[3]["id"])] = "legal_branch"
    kb[4].update(embedding="[0.5,0.25,-1,2]")
    facts.rejected[str(kb[4]["id"])] = "768"
    kb[5].update(embedding=_vector(rng, 768), superseded_by_id=kb[6]["id"], full_text=TRICKY_TEXT,
                 description="", tags=["a,b", 'c"d', "e\\f", None], branch="travail",
                 metadata=Jsonb({"nested": {"q": 'x"y', "ar": "نص", "n": [1, 2.5, None]}}))
    kb[6].update(supersedes_id=kb[5]["id"], embedding=_vector(rng, 768), description=None)
    facts.tricky_kb_id = str(kb[5]["id"])
    facts.supersede_pair = (str(kb[5]["id"]), str(kb[6]["id"]))
    prod_kb = [_prod_copy(kb[-1], title="Titre corrigé en prod", is_indexed=True, chunk_count=7),
               _kb(rng, 900, text_bytes, title="Prod-only document")]
    facts.already_in_prod["knowledge_base"] = [str(kb[-1]["id"])]
    facts.prod_only["knowledge_base"] = [str(prod_kb[1]["id"])]

    # web_pages: spread over sources 0,1,2,3,5 (4 is the clashing source: its page cannot land)
    page_sources = [sources[i]["id"] for i in (0, 1, 2, 3, 5)]
    web_pages = [
        _page(rng, n, page_sources[n % len(page_sources)], text_bytes,
              knowledge_base_id=kb[n % kb_docs]["id"] if n % 3 == 0 and n > 0 else None)
        for n in range(pages)
    ]
    orphan = _page(rng, pages, sources[4]["id"], text_bytes)
    web_pages.append(orphan)
    facts.rejected[str(orphan["id"])] = "web_source_id"
    web_pages[1].update(extracted_text=TRICKY_TEXT, title="", canonical_url=None,
                        meta_keywords=["x", None, ""], site_structure=Jsonb({"depth": 2, "path": ["/", "/a"]}),
                        last_changed_at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    facts.tricky_page_id = str(web_pages[1]["id"])
    clash = web_pages[5]  # on source 0, which prod has
    prod_pages = [
        _prod_copy(web_pages[0], drop=("crawl_debug",), title="Titre prod", ai_summary_status="done"),
        _prod_copy(clash, drop=("crawl_debug",), id=_uuid(rng), title="Same page, prod id",
                   ai_summary_status="pending"),
        _prod_copy(_page(rng, 999, prod_sources[2]["id"], text_bytes), drop=("crawl_debug",),
                   ai_summary_status="pending"),
    ]
    facts.already_in_prod["web_pages"] = [str(web_pages[0]["id"])]
    facts.prod_only["web_pages"] = [str(prod_pages[1]["id"]), str(prod_pages[2]["id"])]
    facts.clash_other_key["web_pages"] = str(clash["id"])

    # web_files: two on page 0 (already in prod); the others on pages that will land
    file_pages = [p for p in web_pages[3:-1] if p is not clash] or web_pages[:1]
    web_files = [_file(rng, n, web_pages[0] if n < 2 else file_pages[n % len(file_pages)]) for n in range(files)]
    prod_files = [
        _prod_copy(web_files[0], filename="renamed-in-prod.pdf"),
        _prod_copy(web_files[1], id=_uuid(rng), filename="same file, prod id"),
    ]
    facts.already_in_prod["web_files"] = [str(web_files[0]["id"])]
    facts.prod_only["web_files"] = [str(prod_files[1]["id"])]
    facts.clash_other_key["web_files"] = str(web_files[1]["id"])

    for conn, rows in (
        (dev, {"web_sources": sources, "knowledge_base": kb, "web_pages": web_pages, "web_files": web_files}),
        (prod, {"web_sources": prod_sources, "knowledge_base": prod_kb, "web_pages": prod_pages,
                "web_files": prod_files}),
    ):
        for table, table_rows in rows.items():
            if conn is prod:
                dev_only = DEV_ONLY_COLUMNS.get(table, ())
                table_rows = [{k: v for k, v in r.items() if k not in dev_only} for r in table_rows]
            _copy_rows(conn, table, table_rows)
    dev.commit()
    prod.commit()

    facts.dev_counts = {"web_sources": len(sources), "knowledge_base": len(kb), "web_pages": len(web_pages),
                        "web_files": len(web_files)}
    facts.prod_counts = {"web_sources": len(prod_sources), "knowledge_base": len(prod_kb),
                         "web_pages": len(prod_pages), "web_files": len(prod_files)}
    return facts
