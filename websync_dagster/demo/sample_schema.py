"""DDL for the demo and test databases, modelled on the real app's schema and its dev/prod drift.

dev and prod differ the way they do in real life (see shared/reference/moncabinet-schema.md):
- column ORDER differs (prod's knowledge_base.embedding was re-added last; prod's web_pages was
  rebuilt by a migration in another order);
- dev-only columns: ``web_sources.category`` (dropped in prod), ``web_pages.crawl_debug``;
- prod-only columns: ``knowledge_base.doc_type`` (set by a trigger), ``web_pages.ai_summary_status``
  (NOT NULL with a default);
- prod's ``knowledge_base.category`` CHECK list lacks ``doctrine`` and its ``legal_branch`` enum lacks
  ``numerique``; dev's embedding column has no dimension, prod's is ``vector(768)``.
"""

CATEGORIES = (
    "legislation", "jurisprudence", "doctrine", "modeles", "procedures", "formulaires", "guides",
    "lexique", "actualites", "conventions", "codes", "constitution", "jort", "google_drive", "autre",
)
PROD_KB_CATEGORIES = tuple(c for c in CATEGORIES if c != "doctrine")
DEV_BRANCHES = ("civil", "penal", "commercial", "administratif", "travail", "famille", "numerique")
PROD_BRANCHES = tuple(b for b in DEV_BRANCHES if b != "numerique")
PIPELINE_STAGES = (
    "crawled", "extracted", "classified", "validated", "chunked", "embedded", "indexed", "published",
    "archived",
)


def _in_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _common_prelude(branches: tuple[str, ...]) -> str:
    return f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TYPE legal_branch AS ENUM ({_in_list(branches)});
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE legal_taxonomy (code text PRIMARY KEY, label_fr text, label_ar text);
CREATE TABLE kb_bulk_imports (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), started_at timestamptz);
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
"""


def _web_sources(dev: bool) -> str:
    legacy = "category text," if dev else ""
    return f"""
CREATE TABLE web_sources (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    base_url text NOT NULL UNIQUE,
    description text,
    favicon_url text,
    {legacy}
    language text CHECK (language IN ('ar', 'fr', 'mixed')),
    priority int CHECK (priority BETWEEN 1 AND 10),
    crawl_frequency interval DEFAULT '1 day',
    css_selectors jsonb DEFAULT '{{}}',
    url_patterns text[],
    excluded_patterns text[],
    max_depth int DEFAULT 3,
    max_pages int CHECK (max_pages BETWEEN 1 AND 10000),
    follow_links bool DEFAULT true,
    download_files bool DEFAULT true,
    custom_headers jsonb,
    is_active bool DEFAULT true,
    health_status text DEFAULT 'unknown'
        CHECK (health_status IN ('healthy', 'degraded', 'failing', 'unknown')),
    last_crawl_at timestamptz,
    total_pages_crawled int DEFAULT 0,
    avg_response_ms double precision,
    created_by uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    seed_urls text[],
    categories text[] NOT NULL
        CHECK (cardinality(categories) > 0 AND categories <@ ARRAY[{_in_list(CATEGORIES)}]::text[]),
    rag_enabled bool NOT NULL DEFAULT true,
    min_word_count int NOT NULL DEFAULT 50,
    drive_config jsonb
);
CREATE TRIGGER web_sources_updated_at BEFORE UPDATE ON web_sources
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
"""


def _knowledge_base(dev: bool) -> str:
    categories = CATEGORIES if dev else PROD_KB_CATEGORIES
    dev_embedding = "embedding vector," if dev else ""
    prod_tail = "doc_type text, embedding vector(768)," if not dev else ""
    kb = f"""
CREATE TABLE knowledge_base (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    category text NOT NULL CHECK (category IN ({_in_list(categories)})),
    title text NOT NULL,
    description text,
    metadata jsonb DEFAULT '{{}}',
    full_text text,
    is_indexed bool DEFAULT false,
    chunk_count int DEFAULT 0,
    language varchar(5) DEFAULT 'fr',
    tags text[],
    version int DEFAULT 1,
    is_active bool DEFAULT true,
    branch legal_branch,
    {dev_embedding}
    quality_score double precision,
    pipeline_stage text DEFAULT 'crawled' CHECK (pipeline_stage IN ({_in_list(PIPELINE_STAGES)})),
    supersedes_id uuid REFERENCES knowledge_base(id) ON DELETE SET NULL,
    superseded_by_id uuid REFERENCES knowledge_base(id) ON DELETE SET NULL,
    uploaded_by uuid REFERENCES users(id) ON DELETE SET NULL,
    taxonomy_code text REFERENCES legal_taxonomy(code),
    bulk_import_id uuid REFERENCES kb_bulk_imports(id),
    {prod_tail}
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER knowledge_base_updated_at BEFORE UPDATE ON knowledge_base
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
"""
    if not dev:
        kb += """
CREATE FUNCTION knowledge_base_doc_type() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.doc_type := CASE WHEN NEW.category IN ('legislation', 'codes', 'constitution', 'jort') THEN 'TEXTES'
                         WHEN NEW.category = 'jurisprudence' THEN 'JURIS'
                         ELSE 'AUTRE' END;
    RETURN NEW;
END $$;
CREATE TRIGGER knowledge_base_doc_type BEFORE INSERT OR UPDATE ON knowledge_base
    FOR EACH ROW EXECUTE FUNCTION knowledge_base_doc_type();
"""
    return kb


_WEB_PAGES_COLUMNS = [
    "id uuid PRIMARY KEY DEFAULT gen_random_uuid()",
    "web_source_id uuid NOT NULL REFERENCES web_sources(id) ON DELETE CASCADE",
    "knowledge_base_id uuid REFERENCES knowledge_base(id) ON DELETE SET NULL",
    "url text NOT NULL",
    "url_hash text NOT NULL",
    "canonical_url text",
    "title text",
    "content_hash text",
    "extracted_text text",
    "word_count int",
    "meta_keywords text[]",
    "structured_data jsonb",
    "linked_files jsonb",
    "status text DEFAULT 'pending' CHECK (status IN "
    "('pending', 'crawled', 'indexed', 'failed', 'unchanged', 'removed', 'blocked'))",
    "is_indexed bool DEFAULT false",
    "chunks_count int DEFAULT 0",
    "freshness_score double precision CHECK (freshness_score BETWEEN 0 AND 1)",
    "site_structure jsonb",
    "last_crawled_at timestamptz",
    "last_changed_at timestamptz",
    "created_at timestamptz NOT NULL DEFAULT now()",
    "updated_at timestamptz NOT NULL DEFAULT now()",
]


def _web_pages(dev: bool, fts_index: bool) -> str:
    if dev:
        columns = [*_WEB_PAGES_COLUMNS, "crawl_debug jsonb"]
    else:
        # prod was rebuilt by a hand-applied migration: same columns, another order, plus one of its own
        columns = [
            *_WEB_PAGES_COLUMNS[:3], *_WEB_PAGES_COLUMNS[6:9], *_WEB_PAGES_COLUMNS[3:6], *_WEB_PAGES_COLUMNS[9:],
            "ai_summary_status text NOT NULL DEFAULT 'pending'",
        ]
    body = ",\n    ".join([*columns, "UNIQUE (web_source_id, url_hash)"])
    ddl = f"""
CREATE TABLE web_pages (
    {body}
);
CREATE TRIGGER web_pages_updated_at BEFORE UPDATE ON web_pages
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
"""
    if fts_index:
        ddl += """
CREATE INDEX web_pages_fts ON web_pages USING gin (
    to_tsvector('french'::regconfig, coalesce(title, '') || ' ' || coalesce(extracted_text, '')));
"""
    return ddl


WEB_FILES = """
CREATE TABLE web_files (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    web_page_id uuid NOT NULL REFERENCES web_pages(id) ON DELETE CASCADE,
    web_source_id uuid NOT NULL REFERENCES web_sources(id) ON DELETE CASCADE,
    knowledge_base_id uuid REFERENCES knowledge_base(id) ON DELETE SET NULL,
    url text NOT NULL,
    filename text,
    file_type text NOT NULL,
    minio_path text,
    file_size bigint,
    content_hash text,
    text_content text CHECK (length(text_content) <= 10000),
    page_count int,
    is_downloaded bool DEFAULT false,
    is_indexed bool DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (web_page_id, url)
);
"""

KB_CHUNKS = """
CREATE TABLE knowledge_base_chunks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    knowledge_base_id uuid NOT NULL REFERENCES knowledge_base(id) ON DELETE CASCADE,
    chunk_index int NOT NULL,
    content text NOT NULL
);
"""


def schema_ddl(side: str, *, fts_index: bool = True) -> str:
    """The whole DDL of the ``dev`` or ``prod`` sample database."""
    if side not in ("dev", "prod"):
        raise ValueError(f"side must be 'dev' or 'prod', not {side!r}")
    dev = side == "dev"
    return "".join([
        _common_prelude(DEV_BRANCHES if dev else PROD_BRANCHES),
        _web_sources(dev),
        _knowledge_base(dev),
        _web_pages(dev, fts_index),
        WEB_FILES,
        KB_CHUNKS,
    ])
