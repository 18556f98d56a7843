"""Server memory with several users: resident memory of the FaceLab server after 1, then 5 browser sessions
have each opened the Verify page and compared two photos.

Models are cached once per process (``st.cache_resource`` in pages/common.py), so five sessions should
cost little more than one. Each session compares its own pair of photos, so the 5th verification is
timed with the models warm but its photos new (not a cache hit). Prints markdown tables.
Run from the repository root: python benchmarks/bench_sessions.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
PHOTOS = SHARED / "five_celebrity_faces" / "train"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SESSIONS = 5
WAIT_MS = 300_000


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB (from /proc: psutil is not installed)."""
    total_kb, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total_kb += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue  # the process ended meanwhile
    return total_kb / 1024


def start_server(home: Path, code: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` of the checkout ``code`` on a free loopback port with its own FaceLab home;
    (process, URL) once healthy."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FACELAB_HOME": str(home), "FACELAB_DATASET_DIRS": str(SHARED)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                              cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the FaceLab server did not become healthy within 60 s")


def photo_pair(n: int) -> list[str]:
    """Session ``n``'s own two photos of one person (different for every session)."""
    madonna = sorted((PHOTOS / "madonna").iterdir())
    return [str(madonna[2 * n]), str(madonna[2 * n + 1])]


def verify_in_new_session(browser, url: str, n: int) -> float:  # noqa: ANN001 - a Playwright browser
    """Open Verify in a new context (a new Streamlit session), upload two photos; seconds until the verdict and
    the barcodes show. The context stays open, as a user's tab would."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{url}/verify")
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.first.wait_for(state="attached", timeout=WAIT_MS)
    start = time.perf_counter()
    first, second = photo_pair(n)
    uploads.nth(0).set_input_files(first)
    uploads.nth(1).set_input_files(second)
    page.get_by_text("Same person", exact=True).or_(page.get_by_text("Different people", exact=True)).first.wait_for(
        timeout=WAIT_MS)
    page.locator("[data-testid=stPlotlyChart] .main-svg").nth(2).wait_for(timeout=WAIT_MS)
    return time.perf_counter() - start


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="facelab-bench-") as home:
        server, url = start_server(Path(home))
        try:
            idle = rss_mb(server.pid)
            rows, seconds = [], []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                for n in range(SESSIONS):
                    seconds.append(verify_in_new_session(browser, url, n))
                    if n + 1 in (1, SESSIONS):
                        time.sleep(2)  # let the reruns settle before reading the memory
                        rows.append((n + 1, rss_mb(server.pid)))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("| sessions that compared two photos | server RSS (MB) |\n|---:|---:|")
    print(f"| 0 (server just started) | {idle:.0f} |")
    for sessions, mb in rows:
        print(f"| {sessions} | {mb:.0f} |")
    print(f"\nGrowth from 1 to {SESSIONS} sessions: {rows[-1][1] - rows[0][1]:+.0f} MB "
          f"({(rows[-1][1] - rows[0][1]) / (SESSIONS - 1):+.1f} MB per extra session).")
    print("\n| verification (two new photos, upload → verdict and barcodes) | seconds |\n|---|---:|")
    print(f"| 1st session (loads the models) | {seconds[0]:.1f} |")
    print(f"| {SESSIONS}th session (models already loaded) | {seconds[-1]:.1f} |")


if __name__ == "__main__":
    main()
