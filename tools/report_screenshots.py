"""Screenshots of a run's report and of a listening trial, and the report's load time, in headless Chromium.

    .venv/bin/python tools/report_screenshots.py results/quickstart   # after: audiobench report results/quickstart

Writes RUN_DIR/screenshots/report.png and listening_trial.png, and prints the report's load time as the
browser measures it (Navigation Timing: domContentLoaded and load event end, ms after navigation start),
over 5 fresh browser sessions (the first load of each session: nothing cached in memory).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import chromium  # noqa: E402


def main(run_dir: str, loads: int = 5) -> None:
    run = Path(run_dir)
    out = run / "screenshots"
    out.mkdir(exist_ok=True)
    page = (run / "report" / "index.html").resolve().as_uri()
    timings = []
    for _ in range(loads):
        d = chromium(1500, 1100)
        try:
            d.get(page)
            timings.append(d.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return [n.domContentLoadedEventEnd, n.loadEventEnd, document.querySelectorAll('tr.clip-row').length,"
                " D.rows.length];"))
        finally:
            d.quit()
    dcl = [t[0] for t in timings]
    load = [t[1] for t in timings]
    print(f"report load ({loads} fresh sessions): domContentLoaded median {statistics.median(dcl):.0f} ms "
          f"(max {max(dcl):.0f}), load event median {statistics.median(load):.0f} ms (max {max(load):.0f}); "
          f"{timings[0][3]} rows, {timings[0][2]} drawn per page; {(run / 'report' / 'index.html').stat().st_size / 1e6:.2f} MB html")

    d = chromium(1500, 1100)
    try:
        d.get(page)
        d.find_element("id", "f-audio").click()
        d.execute_script("document.getElementById('controls').scrollIntoView()")
        time.sleep(1.5)
        d.save_screenshot(str(out / "report.png"))
    finally:
        d.quit()

    from werkzeug.serving import make_server

    from audiobench.listen.server import create_app

    srv = make_server("127.0.0.1", 0, create_app(run), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    d = chromium(1100, 1000)
    try:
        d.get(f"http://127.0.0.1:{srv.server_port}/?listener=screenshot")
        time.sleep(1.0)
        d.find_element("id", "begin").click()  # past the training page; nothing is rated
        time.sleep(0.5)
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(out / "listening_trial.png"))
    finally:
        d.quit()
        srv.shutdown()
    from PIL import Image

    for name in ("report.png", "listening_trial.png"):  # small enough to commit: 256-colour PNGs
        Image.open(out / name).convert("RGB").quantize(256).save(out / name, optimize=True)
    print(f"screenshots in {out}/: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KB" for p in sorted(out.glob("*.png"))))


if __name__ == "__main__":
    main(*sys.argv[1:2])
