"""Screenshots of the Dagster UI on the demo's data, for the README (docs/img/).

    make demo && .venv/bin/python scripts/screenshots.py

Starts the demo's two servers and dagster-webserver on a free port, then headless Chromium (Debian's
`chromium` package) driven by playwright-core (installed from npm into a temp dir, not the repo) takes
each page once the UI has rendered, clicking a tab first where the view needs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from websync_dagster.defs.instance import prepare_dagster_home
from websync_dagster.demo.runner import _env_file, _read_env, _servers

REPO = Path(__file__).resolve().parent.parent
PAGES = {  # file -> (path, button to click first)
    "lineage.png": ("/asset-groups/websync/lineage", None),
    "prod_upserted_plots.png": ("/assets/web_pages/prod_upserted?view=overview", "Plots"),
    "prod_upserted_metadata.png": ("/assets/web_pages/prod_upserted?view=overview", None),
}
NODE_DIR = Path(tempfile.gettempdir()) / "websync-playwright"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _playwright() -> Path:
    if not (NODE_DIR / "node_modules" / "playwright-core").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(NODE_DIR), "playwright-core@1"], check=True)
    return NODE_DIR / "node_modules"


def screenshot(url: str, out: Path, button: str | None) -> None:
    script = NODE_DIR / "screenshot.mjs"
    shutil.copy(REPO / "scripts" / "screenshot.mjs", script)  # resolves playwright-core from NODE_DIR
    subprocess.run(["node", str(script), url, str(out), *([button] if button else [])], check=True, timeout=180)


def main() -> int:
    if not Path("/usr/bin/chromium").exists() or not shutil.which("node"):
        print("screenshots: needs Debian's chromium (apt-get install chromium) and node", file=sys.stderr)
        return 2
    _playwright()
    demo_dir = (REPO / ".demo").absolute()
    env = _read_env(_env_file(demo_dir))
    passwords = {side: psycopg.conninfo.conninfo_to_dict(env[f"WEBSYNC_{side.upper()}_URL"])["password"]
                 for side in ("dev", "prod")}
    _servers(demo_dir, passwords)
    os.environ.update(env)
    prepare_dagster_home(env["DAGSTER_HOME"])
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=os.environ.copy(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        request = urllib.request.Request(f"{base}/graphql", data=b'{"query": "mutation { setNuxSeen }"}',
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()  # no "join the community" dialog over the pages
        out_dir = REPO / "docs" / "img"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, (path, button) in PAGES.items():
            screenshot(base + path, out_dir / name, button)
            print(f"screenshots: {out_dir / name} <- {path}")
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
