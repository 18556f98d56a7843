"""How fast the first page appears: `streamlit run` → first rendered page, and the Dataset page's core imports.

Prints a markdown table. Run from the repository root: python benchmarks/bench_startup.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET_PAGE_IMPORTS = "import core.data.layout, core.data.audit, core.data.zipimport, core.data.builder, core.images"


def import_seconds(statement: str) -> float:
    """Wall time of a fresh interpreter running ``statement`` minus an empty interpreter's."""
    def timed(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - start

    return min(timed(statement) for _ in range(3)) - min(timed("pass") for _ in range(3))


def first_page_seconds(path: str) -> tuple[float, float]:
    """Seconds from launching the server to healthy, and to the page's first heading in chromium."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FACELAB_HOME": str(ROOT / "facelab_home"), "FACELAB_DATASET_DIRS": str(ROOT.parent / "shared" / "datasets")}
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.05)
        healthy = time.perf_counter() - start
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/{path}")
            page.locator("[data-testid=stMetricValue], h1").first.wait_for(timeout=120_000)
            rendered = time.perf_counter() - start
            browser.close()
    finally:
        server.terminate()
        server.wait()
    return healthy, rendered


def main() -> None:
    print("| measure | seconds |\n|---|---:|")
    print(f"| import of the Dataset page's core modules | {import_seconds(DATASET_PAGE_IMPORTS):.2f} |")
    print(f"| import of tensorflow (for comparison) | {import_seconds('import tensorflow'):.2f} |")
    for path in ("", "dataset"):
        healthy, rendered = first_page_seconds(path)
        print(f"| `streamlit run` → server healthy (/{path}) | {healthy:.2f} |")
        print(f"| `streamlit run` → first rendered page (/{path}) | {rendered:.2f} |")


if __name__ == "__main__":
    main()
