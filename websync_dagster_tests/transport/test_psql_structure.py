"""ssh_psql reads psql by its structure, never by its words: the SQLSTATE says what an error is (the severity
word is translated with prod's ``lc_messages``), marker lines are whole lines (a crawled text may hold the
very same words), and websync sets its own session timeouts whatever prod's database or role sets.

Real servers: the embedded prod behind the test sshd, and for the French prod Debian's PostgreSQL 15 (the
bundled servers are built without NLS: their messages are English only) with the sample's prod data and a
French locale compiled into a private directory (``LOCPATH``), so nothing on the machine changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from websync_dagster.core.errors import SyncError, TableSyncError
from websync_dagster.core.settings import Settings
from websync_dagster.demo.postgres import EmbeddedPostgres, server_bin_dir
from websync_dagster.engine.load import refused_by_a_row
from websync_dagster.transport import make_transport
from websync_dagster.transport.base import Query, Statement
from websync_dagster.transport.psql_errors import PsqlError, psql_error
from websync_dagster.transport.psql_script import marked_results
from websync_dagster_tests.conftest import (
    CONTAINER,
    PROD_PASSWORD,
    Servers,
    SyncEnv,
    Vps,
    fill_templates,
    make_sync_env,
)
from websync_dagster_tests.engine.test_refusals import (
    assert_every_dev_row_accounted,
    clone_dev_row,
    prod_ddl,
    rejects_of,
)
from websync_dagster_tests.helpers import sync_all
from websync_dagster_tests.sshd import make_traversable
from websync_dagster_tests.test_faults import SyncInThread, _install_pause, _pause_lock_held, _paused_backend
from websync_dagster_tests.transport.test_steps import _Session

FRENCH = "fr_FR.UTF-8"
FRENCH_CONTAINER = "moncabinet-postgres-fr"
TABLES = ("web_sources", "knowledge_base", "web_pages", "web_files")


def _psql_settings(sync_env: SyncEnv, vps: Vps, container: str, database: str, **extra: str) -> Settings:
    command = f"docker exec -i {container} psql -U postgres -d {database}"
    return sync_env.settings(**vps.env(WEBSYNC_PROD_URL="", WEBSYNC_PROD_PSQL=command, **extra))


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1]


# ----------------------------------------------------------------------------------------- the French prod


def _french_locale(base: Path) -> Path:
    """A LOCPATH directory holding fr_FR.UTF-8, compiled from glibc's locale sources (nothing installed)."""
    subprocess.run(["localedef", "-i", "fr_FR", "-f", "UTF-8", str(base / FRENCH)], check=True, capture_output=True)
    make_traversable(base / FRENCH)
    return base


@pytest.fixture(scope="session")
def servers_fr(servers: Servers, vps: Vps, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A PostgreSQL 15 prod (Debian's, built with NLS) holding the sample's prod data, whose databases speak
    French (``sync_env_fr``), and a container on the test VPS whose psql speaks French too."""
    try:
        bin_dir = server_bin_dir(15)
    except ValueError as exc:
        pytest.skip(str(exc))
    needed = [Path("/usr/share/locale/fr/LC_MESSAGES/postgres-15.mo"), Path("/usr/share/i18n/locales/fr_FR")]
    missing = [str(p) for p in needed if not p.exists()]
    if missing or shutil.which("localedef") is None:
        pytest.skip(f"no French messages or locale source for PostgreSQL 15: {', '.join(missing) or 'localedef'}")
    locales = _french_locale(tmp_path_factory.mktemp("locales"))
    with pytest.MonkeyPatch.context() as patch:  # the server's environment: lc_messages = fr_FR.UTF-8 is valid
        patch.setenv("LOCPATH", str(locales))
        prod = EmbeddedPostgres(tmp_path_factory.mktemp("pgfr") / "prod", password=PROD_PASSWORD, version=15).start()
    try:
        scratch = f"tplfr_dev_{os.getpid()}"  # populate() fills dev and prod together: its dev copy is dropped
        facts = fill_templates(servers.dev.create_database(scratch), prod.create_database("tpl"))
        with psycopg.connect(servers.dev.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(scratch)))
        assert facts == servers.facts
        env = vps.bin_dir / "containers" / f"{FRENCH_CONTAINER}.env"
        env.write_text(
            f"CONTAINER_IP=127.0.0.1\nPGHOST=127.0.0.1\nPGPORT={prod.port}\nPGUSER=postgres\n"
            f"PGPASSWORD={PROD_PASSWORD}\nPATH={bin_dir}:/usr/local/bin:/usr/bin:/bin\n"
            f"LOCPATH={locales}\nLANG={FRENCH}\nLC_ALL={FRENCH}\n"
        )
        env.chmod(0o644)
        yield Servers(servers.dev, prod, facts)
    finally:
        prod.stop()


@pytest.fixture
def sync_env_fr(servers_fr: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SyncEnv:
    """``sync_env`` whose prod database is on the French server, with ``lc_messages`` French."""
    env = make_sync_env(servers_fr, tmp_path, monkeypatch)
    with env.prod() as prod:
        prod.execute(sql.SQL("ALTER DATABASE {} SET lc_messages = {}").format(
            sql.Identifier(_database(env.prod_url)), sql.Literal(FRENCH)))
    return env


def _ids(url: str, table: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute(sql.SQL("SELECT id::text FROM {}").format(sql.Identifier(table)))}


# ------------------------------------------------------------------------------------------ marker lines


MARKED_TEXT = ("Avant la ligne.\n__websync_committed__\n__websync_result_rows__\n__websync_result_rejects__\n"
               "__websync_result_after__\nAprès la ligne.")


def test_a_crawled_text_holding_marker_lines_syncs_byte_identical(sync_env, vps):
    """A page whose text holds psql's own marker lines lands byte for byte; another, refused by prod with a
    message quoting that text, is rejected with prod's message as it was (it travels back in a result)."""
    template = sync_env.facts.tricky_page_id
    with sync_env.dev() as dev:
        kept = clone_dev_row(dev, "web_pages", template, url="https://marked.example.tn/kept",
                             url_hash="marked-kept", extracted_text=MARKED_TEXT, title=MARKED_TEXT)
        refused = clone_dev_row(dev, "web_pages", template, url="https://marked.example.tn/refused",
                                url_hash="marked-refused", extracted_text=MARKED_TEXT)
    with prod_ddl(sync_env) as prod:
        prod.execute(sql.SQL(
            "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = {} THEN RAISE EXCEPTION 'refusé : %', NEW.extracted_text; END IF; RETURN NEW; END $$"
        ).format(sql.Literal(refused)))
        prod.execute("CREATE TRIGGER refuse_marked BEFORE INSERT ON web_pages FOR EACH ROW "
                     "EXECUTE FUNCTION refuse_marked()")
    settings = _psql_settings(sync_env, vps, CONTAINER, _database(sync_env.prod_url))

    pages = sync_all(settings)["web_pages"].result

    rejects = rejects_of(pages)
    assert rejects[refused]["reason"] == f"refusé : {MARKED_TEXT}"
    assert pages.lost == 0
    with sync_env.dev() as dev, sync_env.prod() as prod:
        query = "SELECT extracted_text, title, md5(extracted_text) FROM web_pages WHERE id = %s"
        assert prod.execute(query, [kept]).fetchone() == dev.execute(query, [kept]).fetchone()
        assert prod.execute(query, [kept]).fetchone()[0] == MARKED_TEXT
        missing = _ids(sync_env.dev_url, "web_pages") - _ids(sync_env.prod_url, "web_pages")
        assert missing == set(rejects) | {sync_env.facts.clash_other_key["web_pages"]}


def test_results_are_parsed_by_whole_marker_lines_only():
    """The end marker and the result markers count only as lines of their own; json_agg's JSON never
    holds a raw newline, so a marker inside a value never starts a line."""
    value = '[{"t":"a\\n__websync_committed__\\n__websync_result_x__\\nb"}]'
    out = f"__websync_result_rows__\n{value}\n__websync_result_n__\n[{{\"n\": 1}}]\n__websync_committed__\n"
    assert marked_results(out) == {"rows": [{"t": "a\n__websync_committed__\n__websync_result_x__\nb"}],
                                         "n": [{"n": 1}]}
    with pytest.raises(PsqlError, match="did not report that the transaction committed"):
        marked_results("__websync_result_rows__\n[]\n")


# --------------------------------------------------------------------------------------- the French prod


def test_a_french_prod_rejects_a_row_with_its_french_reason_and_a_cut_is_still_a_lost_link(sync_env_fr, vps):
    """prod's lc_messages is French, and so is its psql: the refused row is rejected with prod's French
    reason and the rest lands; prod's backend terminated mid-table is a lost link (a retry), not a failure."""
    env, facts = sync_env_fr, sync_env_fr.facts
    with env.dev() as dev:
        refused = dev.execute("SELECT id::text FROM web_pages WHERE NOT (id::text = ANY(%s)) ORDER BY ctid "
                              "OFFSET 10 LIMIT 1", [[*facts.rejected, *facts.clash_other_key.values()]]).fetchone()[0]
        dev_pages = {r[0] for r in dev.execute("SELECT id::text FROM web_pages")}
    with prod_ddl(env) as prod:
        prod.execute(sql.SQL("ALTER TABLE web_pages ADD CONSTRAINT web_pages_not_embargoed CHECK (id <> {}) "
                             "NOT VALID").format(sql.Literal(refused)))
    with env.prod() as prod:
        _install_pause(prod)
    settings = _psql_settings(env, vps, FRENCH_CONTAINER, _database(env.prod_url))

    with _pause_lock_held(env.prod_url):
        sync = SyncInThread(settings)
        pid = _paused_backend(env.prod_url)
        with env.prod() as prod:
            assert prod.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()[0]
    sync.join(120)

    runs = sync.runs
    assert all(runs[t].landed for t in TABLES), {t: r.error for t, r in runs.items()}
    retries = [line for line in sync.reports if "reconnecting in" in line]
    assert len(retries) == 1 and retries[0].startswith("web_pages: the link to prod broke ("), retries
    assert "arrêt des connexions suite à la demande de l'administrateur" in retries[0]  # prod spoke French
    result = runs["web_pages"].load.result
    rejects = rejects_of(result)
    assert set(rejects) == {refused} | (set(facts.rejected) & dev_pages), rejects
    assert result.rejected == len(rejects) and result.lost == 0
    reason = rejects[refused]["reason"]
    assert "viole la contrainte de vérification « web_pages_not_embargoed »" in reason, reason
    with env.dev() as dev, env.prod() as prod:
        assert_every_dev_row_accounted(dev, prod, "web_pages", set(rejects) | {facts.clash_other_key["web_pages"]})


# -------------------------------------------------------------------------------- errors by their SQLSTATE


def _lost(error: BaseException) -> bool:
    wrapped = TableSyncError("web_pages", "load into prod failed")
    wrapped.__cause__ = error
    return _Session().connection_lost(wrapped)


# psql's stderr as psql 15 (Debian, NLS) and 16 (bundled) print it with VERBOSITY=verbose; status is psql's
# exit status (3: an error under ON_ERROR_STOP, 2: the connection went bad)
RECORDED = {
    "unique, English": (3, 'ERROR:  23505: duplicate key value violates unique constraint "t_pkey"\n'
                           "DETAIL:  Key (id)=(1) already exists.\nSCHEMA NAME:  public\nTABLE NAME:  t\n"
                           "CONSTRAINT NAME:  t_pkey\nLOCATION:  _bt_check_unique, nbtinsert.c:664\n",
                        "23505", 'duplicate key value violates unique constraint "t_pkey"', True, False),
    "unique, French": (3, "ERREUR:  23505: la valeur d'une clé dupliquée rompt la contrainte unique « t_pkey »\n"
                          "DÉTAIL : La clé « (id)=(1) » existe déjà.\nNOM DE SCHÉMA : public\n"
                          "EMPLACEMENT : _bt_check_unique, nbtinsert.c : 664\n",
                       "23505", "la valeur d'une clé dupliquée rompt la contrainte unique « t_pkey »", True, False),
    "from a file, after a notice": (
        3, "psql:/tmp/load.sql:1: NOTICE:  00000: la table « nulle » n'existe pas, poursuite du traitement\n"
           "EMPLACEMENT : DropErrorMsgNonExistent, tablecmds.c : 1310\n"
           "psql:/tmp/load.sql:2: ERREUR:  P0001: refusé\n"
           "CONTEXTE : fonction PL/pgSQL inline_code_block, ligne 1 à RAISE\n"
           "EMPLACEMENT : exec_stmt_raise, pl_exec.c : 3891\n",
        "P0001", "refusé", True, False),
    "disk full": (3, "ERREUR:  53100: plein\nCONTEXTE : fonction PL/pgSQL inline_code_block, ligne 1 à RAISE\n"
                     "EMPLACEMENT : exec_stmt_raise, pl_exec.c : 3891\n", "53100", "plein", False, False),
    "terminated, French": (2, "FATAL:  57P01: arrêt des connexions suite à la demande de l'administrateur\n"
                              "EMPLACEMENT : ProcessInterrupts, postgres.c : 3211\n"
                              "la connexion au serveur a été coupée de façon inattendue\n"
                              "\tLe serveur s'est peut-être arrêté anormalement avant ou durant le\n"
                              "\ttraitement de la requête.\nla connexion au serveur a été perdue\n",
                           "57P01", "arrêt des connexions suite à la demande de l'administrateur", False, True),
    "idle timeout": (2, "FATAL:  25P03: terminating connection due to idle-in-transaction timeout\n"
                        "server closed the connection unexpectedly\n",
                     "25P03", "terminating connection due to idle-in-transaction timeout", False, True),
    "crashed, French": (2, "la connexion au serveur a été coupée de façon inattendue\n"
                           "\tLe serveur s'est peut-être arrêté anormalement avant ou durant le\n"
                           "\ttraitement de la requête.\nla connexion au serveur a été perdue\n",
                        None, "la connexion au serveur a été coupée de façon inattendue", False, True),
    "no such database": (2, 'psql: erreur : la connexion au serveur sur « 127.0.0.1 », port 5432 a échoué : '
                            "FATAL:  la base de données « nulle » n'existe pas\n",
                         None, "la base de données « nulle » n'existe pas", False, True),
}


@pytest.mark.parametrize(("status", "stderr", "sqlstate", "message", "refused", "lost"), list(RECORDED.values()),
                         ids=list(RECORDED))
def test_a_psql_error_is_told_by_its_sqlstate(status, stderr, sqlstate, message, refused, lost):
    error = psql_error(status, stderr, where="prod (psql on vps)", otherwise="remote command psql failed: ?")
    assert isinstance(error, PsqlError) and isinstance(error, SyncError) and isinstance(error, psycopg.Error)
    assert error.sqlstate == sqlstate
    assert str(error) == f"prod (psql on vps): {message}"
    assert refused_by_a_row(error) is refused
    assert _lost(error) is lost


def test_psql_without_a_server_message_says_what_the_remote_command_said():
    error = psql_error(1, "docker: Error response from daemon: No such container: x\n", where="prod",
                       otherwise="remote command docker failed: No such container: x")
    assert error.sqlstate is None and str(error) == "remote command docker failed: No such container: x"
    assert not _lost(error) and not refused_by_a_row(error)


def _raised_by(settings: Settings, statement: str) -> PsqlError:
    with make_transport(settings).session() as session, pytest.raises(PsqlError) as raised:
        session.run_transaction([Statement(sql.SQL(statement))])
    return raised.value


@pytest.mark.parametrize(("prod", "container", "words"), [
    ("sync_env", CONTAINER, "duplicate key value"), ("sync_env_fr", FRENCH_CONTAINER, "la valeur d'une clé dupliquée")])
def test_errors_psql_prints_on_the_vps_carry_their_sqlstate(request, vps, prod, container, words):
    env: SyncEnv = request.getfixturevalue(prod)
    settings = _psql_settings(env, vps, container, _database(env.prod_url))
    error = _raised_by(settings, "INSERT INTO legal_taxonomy VALUES ('x'), ('x')")
    assert error.sqlstate == "23505" and words in str(error) and refused_by_a_row(error), str(error)
    assert "\n" not in str(error)
    full = _raised_by(settings, "DO $$ BEGIN RAISE EXCEPTION 'plein' USING ERRCODE = 'disk_full'; END $$")
    assert full.sqlstate == "53100" and str(full).endswith(": plein") and not refused_by_a_row(full)
    assert not _lost(full)


# ------------------------------------------------------------------------------------- websync's timeouts


#: one pause of 0.5 s in each transaction that inserts into web_pages, longer than prod's statement_timeout
SLOW_INSERTS = """
CREATE FUNCTION websync_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('websync_test.slept', true) IS DISTINCT FROM 'yes' THEN
    PERFORM pg_sleep(0.5);
    PERFORM set_config('websync_test.slept', 'yes', true);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER websync_test_slow AFTER INSERT ON web_pages FOR EACH STATEMENT EXECUTE FUNCTION websync_test_slow();
"""


def test_prod_database_timeouts_do_not_apply_to_websync_sessions(sync_env, vps):
    """prod's database sets a 300 ms statement_timeout and a 1 ms lock_timeout: websync's sessions set their
    own, so a load whose statement takes 0.5 s completes; each session has its own application_name."""
    database = _database(sync_env.prod_url)
    with prod_ddl(sync_env) as prod:
        prod.execute(SLOW_INSERTS)
        for name, value in (("statement_timeout", "300ms"), ("lock_timeout", "1ms"),
                            ("idle_in_transaction_session_timeout", "100ms")):
            prod.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(database), sql.Identifier(name), sql.Literal(value)))
    settings = _psql_settings(sync_env, vps, CONTAINER, database, WEBSYNC_WAIT_S="7")

    outcomes = sync_all(settings)

    assert outcomes["web_pages"].result.inserted > 0 and outcomes["web_pages"].result.lost == 0
    missing = _ids(sync_env.dev_url, "web_pages") - _ids(sync_env.prod_url, "web_pages")
    assert missing == set(rejects_of(outcomes["web_pages"].result)) | {sync_env.facts.clash_other_key["web_pages"]}
    shown = sql.SQL("SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS "
                    "lock, current_setting('idle_in_transaction_session_timeout') AS idle, application_name "
                    "FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    names = set()
    for wait_s, lock in (("7", "7s"), ("0", "1ms")):
        transport = make_transport(_psql_settings(sync_env, vps, CONTAINER, database, WEBSYNC_WAIT_S=wait_s))
        with transport.session() as session:
            [row] = session.query(shown)
            [in_transaction] = session.run_transaction([Query("shown", shown)]).rows("shown")
        assert row == in_transaction == {"statement": "0", "lock": lock, "idle": "1min",
                                         "application_name": session.application_name}
        assert re.fullmatch(r"websync-[0-9a-f]{8}", session.application_name)
        names.add(session.application_name)
    assert len(names) == 2  # one per session: a lock's holder or waiter is found by it


def test_a_copy_out_and_the_reachability_probe_run_with_websync_timeouts_too(sync_env, vps):
    database = _database(sync_env.prod_url)
    with sync_env.prod() as prod:
        prod.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout = '1ms'").format(sql.Identifier(database)))
    settings = _psql_settings(sync_env, vps, CONTAINER, database)
    with make_transport(settings).session() as session:
        copied = b"".join(session.copy_out(sql.SQL(
            "COPY (SELECT current_setting('statement_timeout'), pg_sleep(0.05)::text) TO STDOUT")))
    assert copied == b"0\t\n"
