"""Screenshots of the Dagster UI on the demo's data, for the README (docs/img/), and a check of what a new
user sees first.

    make demo && .venv/bin/python scripts/screenshots.py [--dir .demo]

1. First view: dagster-webserver on a fresh instance (an empty DAGSTER_HOME holding the dagster.yaml websync
   writes) is opened at its root and at the lineage page `make demo-ui` points to; any dialog over them
   (e.g. Dagster's "Join the Dagster community" pop-up) is reported, and the script then exits 1.
2. The pages of docs/img/ on the demo's instance (its runs and metadata): the lineage with every table's
   group open, and web_pages/prod_upserted's metadata and plots.

Headless Chromium is Debian's `chromium` package, driven by playwright-core (installed from npm into a
temp dir, not the repo) through scripts/screenshot.mjs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.defs.instance import instance_yaml, prepare_dagster_home
from websync_dagster.demo.ports import free_port
from websync_dagster.demo.runner import LINEAGE_PATH, _env_file, _read_env

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = Path(tempfile.gettempdir()) / "websync-playwright"
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
#: the lineage with each table's group (and prod's) open: the URL the UI itself makes when they are clicked open
LINEAGE_OPEN = LINEAGE_PATH + "?expanded=" + quote(",".join(f"global@global:{g}" for g in (*DEFAULT_TABLES, "prod")))
PAGES = {  # file -> (path, options of screenshot.mjs)
    "lineage.png": (LINEAGE_OPEN, []),
    "prod_upserted_plots.png": ("/assets/web_pages/prod_upserted?view=overview", ["--click", "Plots"]),
    "prod_upserted_metadata.png": ("/assets/web_pages/prod_upserted?view=overview", []),
}


def _playwright() -> None:
    if not (NODE_DIR / "node_modules" / "playwright-core").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(NODE_DIR), "playwright-core@1"], check=True)
    shutil.copy(REPO / "scripts" / "screenshot.mjs", NODE_DIR / "screenshot.mjs")  # resolves playwright-core there


def screenshot(url: str, out: Path, options: list[str]) -> dict:
    """Saves the page as ``out``; returns where it ended up and the text of any dialog over it."""
    proc = subprocess.run(["node", str(NODE_DIR / "screenshot.mjs"), url, str(out), *options], check=True,
                          timeout=180, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def webserver(env: dict[str, str]) -> Iterator[str]:
    """dagster-webserver on a free port with ``env`` (DAGSTER_HOME, the settings); yields its base URL."""
    port = free_port()
    server = subprocess.Popen([str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-webserver did not serve {base}") from None
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(30)


def check_first_view(work: Path) -> list[str]:
    """What a new user sees first, on a fresh instance set up as websync sets it up; the problems found."""
    home = work / "fresh_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml())
    problems = []
    with webserver({**os.environ, "DAGSTER_HOME": str(home)}) as base:
        for path in ("/", LINEAGE_PATH):
            seen = screenshot(base + path, work / "first_view.png", [])
            print(f"screenshots: fresh instance, {path} -> {seen['url'].removeprefix(base)}; "
                  f"dialog: {seen['dialogs'][0].splitlines()[0] if seen['dialogs'] else 'none'}")
            if seen["dialogs"]:
                problems.append(f"{path}: a dialog covers the page: {seen['dialogs'][0].splitlines()[0]!r}")
    return problems


def take_pages(demo_dir: Path) -> None:
    env = _read_env(_env_file(demo_dir))
    os.environ.update(env)
    prepare_dagster_home(env["DAGSTER_HOME"])
    with webserver(os.environ.copy()) as base:
        request = urllib.request.Request(f"{base}/graphql", data=b'{"query": "mutation { setNuxSeen }"}',
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()  # the docs' pages without the community pop-up
        out_dir = REPO / "docs" / "img"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, (path, options) in PAGES.items():
            screenshot(base + path, out_dir / name, options)
            print(f"screenshots: {out_dir / name} <- {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=REPO / ".demo", help="the demo's directory (make demo)")
    args = parser.parse_args(argv)
    if not Path("/usr/bin/chromium").exists() or not shutil.which("node"):
        print("screenshots: needs Debian's chromium (apt-get install chromium) and node", file=sys.stderr)
        return 2
    if not _env_file(args.dir.absolute()).exists():
        print(f"screenshots: no {_env_file(args.dir)}: run `make demo` first", file=sys.stderr)
        return 2
    _playwright()
    with tempfile.TemporaryDirectory() as work:
        problems = check_first_view(Path(work))
    take_pages(args.dir.absolute())
    for problem in problems:
        print(f"screenshots: first view on a fresh instance: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
