"""How fast does a big coil open? A store with a coil of N defects (through the store's own
writer, tests/web_helpers.py), ``inspectd web`` over it, and Debian's headless Chromium opening
the coil map R times; for each: the server's time to first byte, the page's end, the marks
drawn and the first paint after them, in ms from navigation start (Navigation Timing).

    .venv/bin/python pipelines/bench_web.py [--defects 10000] [--runs 6] [--db postgresql://...] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from web_helpers import fill_demo, web_server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--defects", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--db", default=None, help="SQLite file or postgresql:// URL to fill (default: a new temporary file)")
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    url = args.db or str(Path(tempfile.mkdtemp(prefix="bench-web-")) / "store.db")
    t = time.perf_counter()
    fill_demo(url, big_defects=args.defects)
    fill_s = time.perf_counter() - t
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    runs = []
    try:
        with web_server(url) as base:
            for _ in range(args.runs):
                driver.get(base + "/coil/map/C24-BIG")
                while not driver.execute_script("return window.inspectdMap && window.inspectdMap.paintedMs"):
                    time.sleep(0.02)
                r = driver.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "return {first_byte: n.responseStart, response_end: n.responseEnd, drawn: window.inspectdMap.drawnMs,"
                    " painted: window.inspectdMap.paintedMs, bytes: n.transferSize, marks: window.inspectdMap.marks}")
                runs.append({k: round(v) for k, v in r.items()})
    finally:
        driver.quit()
    warm = runs[1:] if len(runs) > 1 else runs
    result = {"defects": runs[0]["marks"], "fill_s": round(fill_s, 1), "runs": runs,
              "painted_ms_median_warm": statistics.median(r["painted"] for r in warm),
              "first_byte_ms_median_warm": statistics.median(r["first_byte"] for r in warm)}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
