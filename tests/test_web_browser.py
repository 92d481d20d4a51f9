"""The pages in a real headless browser: Debian's Chromium driven through chromedriver (Selenium).

Skipped only where Chromium or chromedriver is not installed (``.ci/run`` installs both).
With ``INSPECTD_WEB_SCREENSHOTS=DIR`` the tests save a screenshot of each page there (that is
how docs/web/*.png are made); the 10,000-defect coil's time to open is printed, not asserted
(BENCHMARKS.md has the figure).
"""
from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from store_helpers import TIMEOUT_S
from inspectd.store.database import connect
from inspectd.store.writer import StoreWriter
from web_helpers import Feed, fill_demo, web_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
SHOTS = os.environ.get("INSPECTD_WEB_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("webui") / "store.db")
    fill_demo(path, big_defects=10_000)
    with web_server(path, "--poll", "0.3") as base:
        yield base, path


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(TIMEOUT_S * 2)
    try:
        yield driver
    finally:
        driver.quit()


def wait_js(driver, script: str, timeout_s: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout_s} s: {script}")


def shot(driver, name: str) -> None:
    if not SHOTS:
        return
    import cv2
    import numpy as np

    png = driver.get_screenshot_as_png()
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    img = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(Path(SHOTS) / f"{name}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def query(path: str, sql: str):
    db = connect(path, read_only=True)
    try:
        return db.query(sql)
    finally:
        db.close()


def test_line_now_shows_each_camera_and_follows_new_verdicts(site, browser):
    base, path = site
    browser.get(base + "/line")
    wait_js(browser, "return document.querySelector('#cam-top canvas') && document.querySelector('#cam-bottom canvas')")
    wait_js(browser, "return document.getElementById('live').textContent === 'live'")
    text = browser.find_element("id", "cam-top").text
    assert "coil C24-0420" in text and "frames/s" in text and "heartbeat age" in text
    assert "uninspected: frames" in text
    shot(browser, "line")
    # A new verdict in the database reaches the open page by itself.
    db = connect(path)
    try:
        feed = Feed(StoreWriter(db), "top", "demo-top-2")
        feed.send("verdict", {"frame": 777777, "status": "reject", "width": 2500, "height": 400,
                              "capture_wall_ns": time.time_ns(), "strip_position_m": 31.0, "coil": "C24-0420",
                              "coil_position_m": 31.0, "frame_length_m": 0.2,
                              "defects": [{"class": "inclusion", "score": 0.9, "box": [100, 100, 200, 200],
                                           "rejects": True}]}, "reject")
        feed.w.flush()
    finally:
        db.close()
    wait_js(browser, "const c = (window.inspectdLineLast || {cameras: []}).cameras.find(c => c.camera === 'top');"
                     "return c && c.strip.length && c.strip[0].frame === 777777")
    assert "restart" in browser.find_element("id", "cam-top").text     # the new publisher id is a restart gap


def test_coil_map_draws_every_defect_and_a_click_shows_its_crop(site, browser):
    base, path = site
    n = query(path, "SELECT count(*) FROM defects WHERE coil = 'C24-0418'")[0][0]
    n_uninspected = query(path, "SELECT count(*) FROM uninspected WHERE coil = 'C24-0418'")[0][0]
    n_rejects = query(path, "SELECT count(*) FROM verdicts WHERE coil = 'C24-0418' AND status = 'reject'")[0][0]
    browser.get(base + "/coil/map/C24-0418")
    wait_js(browser, "return window.inspectdMap && window.inspectdMap.paintedMs")
    assert browser.execute_script("return window.inspectdMap.marks") == n
    assert browser.execute_script("return document.querySelectorAll('#map rect.uninspected').length") == n_uninspected
    assert browser.execute_script("return document.querySelectorAll('#map rect.reject').length") == n_rejects
    assert browser.execute_script("return document.querySelectorAll('#alarms line').length") == 1
    # Click the highest-scoring mark where it is drawn; the panel shows its crop (a real,
    # decoded image) and details.
    i = browser.execute_script("""
        const data = JSON.parse(document.getElementById('data').textContent);
        let best = 0;
        data.defects.forEach((d, i) => { if (d[3] > data.defects[best][3]) best = i; });
        window.scrollTo(0, 0);
        const [x, y] = window.inspectdMap.at(best);
        document.getElementById('map').scrollTop = Math.max(0, y - document.getElementById('map').getBoundingClientRect().top - 200);
        return best;""")
    x, y = browser.execute_script(f"return window.inspectdMap.at({i})")
    browser.execute_script("document.elementFromPoint(arguments[0], arguments[1]).dispatchEvent("
                           "new MouseEvent('click', {bubbles: true, clientX: arguments[0], clientY: arguments[1]}))", x, y)
    score = browser.execute_script(f"return JSON.parse(document.getElementById('data').textContent).defects[{i}][3]")
    wait_js(browser, "const i = document.getElementById('crop'); return i && i.complete && i.naturalWidth > 0")
    detail = browser.find_element("id", "detail").text
    assert "class" in detail and "branch" in detail and "position" in detail
    assert f"score {score:.2f}" in detail
    # The legend hides a class.
    browser.execute_script("document.querySelector('#legend input[data-class=\"scratches\"]').click()")
    assert browser.execute_script("return window.inspectdMap.hidden()") == ["scratches"]
    browser.execute_script("document.querySelector('#legend input[data-class=\"scratches\"]').click()")
    # ... and so does a camera (top and bottom surface).
    browser.execute_script("document.querySelector('#legend input[data-camera=\"bottom\"]').click()")
    assert browser.execute_script("return window.inspectdMap.hidden()") == ["camera bottom"]
    browser.execute_script("document.querySelector('#legend input[data-camera=\"bottom\"]').click()")
    shot(browser, "coil-map")


def test_a_coil_with_10000_defects_opens(site, browser):
    base, path = site
    n = query(path, "SELECT count(*) FROM defects WHERE coil = 'C24-BIG'")[0][0]
    assert n >= 10_000
    times = []
    for _ in range(3):
        browser.get(base + "/coil/map/C24-BIG")
        painted = wait_js(browser, "return window.inspectdMap && window.inspectdMap.paintedMs")
        times.append(painted)
    assert browser.execute_script("return window.inspectdMap.marks") == n
    print(f"\ncoil with {n} defects: painted {', '.join(f'{t:.0f}' for t in times)} ms after navigation start")


def test_coils_list_report_and_print(site, browser):
    base, path = site
    browser.get(base + "/coils")
    rows = browser.find_elements("css selector", "#coils tbody tr")
    assert len(rows) == 5
    assert all(r.find_element("css selector", "td.grade").text in "ABCD-" for r in rows)
    shot(browser, "coils")
    browser.get(base + "/coil/report/C24-0418")
    assert "Coil report: C24-0418" in browser.find_element("tag name", "h1").text
    assert "Defects per class" in browser.page_source
    shot(browser, "report")
    from selenium.webdriver.common.print_page_options import PrintOptions

    pdf = base64.b64decode(browser.print_page(PrintOptions()))
    assert pdf[:5] == b"%PDF-" and len(pdf) > 5000


def test_gallery_filters_by_class(site, browser):
    base, path = site
    browser.get(base + "/gallery")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("name", "class")).select_by_value("patches")
    browser.find_element("name", "min_score").send_keys("0.6")
    browser.find_element("css selector", ".filters button").click()
    wait_js(browser, "return location.search.includes('class=patches')")
    captions = [e.text for e in browser.find_elements("css selector", ".tile figcaption")]
    assert captions and all(c.startswith("patches") for c in captions)
    wait_js(browser, "return [...document.querySelectorAll('.tile img')].slice(0, 6).every(i => i.complete && i.naturalWidth > 0)")
    browser.get(base + "/gallery")
    shot(browser, "gallery")
