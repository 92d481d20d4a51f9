"""inspectd web as a user runs it: a real server (subprocess) over a store filled through the
store's own writer, requested over HTTP; the browser tests are in test_web_browser.py."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest

from store_helpers import postgres_server  # noqa: F401
from inspectd.cli import main
from inspectd.store.database import connect
from inspectd.store.read import RECENT_VERDICTS
from web_helpers import fill_demo, get, web_server

@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("web") / "store.db")
    fill_demo(path)
    return path


def test_every_page_answers_and_the_csv_matches_the_store(demo_db):
    db = connect(demo_db, read_only=True)
    try:
        n = db.query("SELECT count(*) FROM defects WHERE coil = 'C24-0418'")[0][0]
        scratches = db.query("SELECT count(*) FROM defects WHERE coil = 'C24-0418' AND class = 'scratches'")[0][0]
        a_defect = db.query("SELECT d.id FROM defects d JOIN crops c ON c.publisher = d.publisher "
                            "AND c.verdict_seq = d.verdict_seq AND c.idx = d.idx LIMIT 1")[0][0]
    finally:
        db.close()
    with web_server(demo_db) as base:
        status, headers, _ = get(base + "/")
        assert status == 200 and "Line now" in _.decode()          # followed the redirect to /line
        for path, text in [("/line", "Line now"), ("/coils", "C24-0418"), ("/coil/map/C24-0418", "Coil C24-0418"),
                           ("/coil/report/C24-0418", "Coil report: C24-0418"), ("/gallery", "Gallery"),
                           ("/gallery?class=scratches&min_score=0.5", "scratches")]:
            status, headers, body = get(base + path)
            assert status == 200 and text in body.decode(), path
        status, headers, body = get(base + "/coil/csv/C24-0418")
        assert status == 200 and headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        assert len(rows) == n and sum(r["class"] == "scratches" for r in rows) == scratches
        assert [float(r["position_m"]) for r in rows] == sorted(float(r["position_m"]) for r in rows)
        status, headers, body = get(base + f"/crops/{a_defect}")
        assert status == 200 and headers["content-type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
        status, _, body = get(base + f"/defects/{a_defect}")
        assert status == 200 and json.loads(body)["crop"] == 1
        line = json.loads(get(base + "/line.json")[2])
        assert {c["camera"] for c in line["cameras"]} == {"top", "bottom"}
        top = next(c for c in line["cameras"] if c["camera"] == "top")
        assert top["coil"] == "C24-0420" and len(top["strip"]) == RECENT_VERDICTS and 18 < top["fps"] <= 25.5   # 25 frames/s, less the uninspected ones
        assert get(base + "/coil/map/no-such-coil")[0] == 404
        assert get(base + "/crops/999999999")[0] == 404


def test_gallery_filters(demo_db):
    with web_server(demo_db) as base:
        body = get(base + "/gallery?class=patches&min_score=0.7")[2].decode()
        captions = body.split('<figcaption>')[1:]
        assert captions and all(">patches</b>" in c for c in captions)
        assert all(float(c.split("</b> ")[1].split()[0].split("<")[0]) >= 0.7 for c in captions)
        body = get(base + "/gallery?coil=C24-0417")[2].decode()
        assert 'href="/coil/map/C24-0417"' in body and "C24-0418" not in body.split('id="tiles"')[1]
        # Time, as the form's datetime-local fields send it (local time): the last half hour holds
        # only the coil running now; from an hour ahead, nothing.
        fmt = "%Y-%m-%dT%H:%M"
        recent = (dt.datetime.now() - dt.timedelta(minutes=30)).strftime(fmt)
        tiles = get(base + f"/gallery?since={recent}")[2].decode().split('id="tiles"')[1]
        assert "C24-0420" in tiles and "C24-0419" not in tiles and "C24-0418" not in tiles
        ahead = (dt.datetime.now() + dt.timedelta(hours=1)).strftime(fmt)
        assert "<figure" not in get(base + f"/gallery?since={ahead}")[2].decode()
        tiles = get(base + f"/gallery?until={recent}&coil=C24-0418")[2].decode().split('id="tiles"')[1]
        assert "C24-0418" in tiles


def test_token_is_required_on_every_request_when_set(demo_db, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with web_server(demo_db, "--token-file", str(token_file)) as base:
        for path in ("/line", "/coils", "/line.json", "/static/map.js", "/crops/1", "/line/stream"):
            assert get(base + path)[0] == 401, path
        assert get(base + "/coils", {"Authorization": "Bearer wrong-token"})[0] == 401
        assert get(base + "/coils", {"Authorization": "Bearer s3cret-token"})[0] == 200
        status, headers, _ = get(base + "/coils?token=s3cret-token")
        assert status == 200 and "inspectd_token=s3cret-token" in headers.get("set-cookie", "")
        assert get(base + "/coils", {"Cookie": "inspectd_token=s3cret-token"})[0] == 200


def test_web_reads_postgresql(postgres_server):
    url = postgres_server.new_database()
    fill_demo(url)
    with web_server(url) as base:
        for path in ("/line", "/coils", "/coil/map/C24-0418", "/coil/report/C24-0418", "/gallery",
                     "/coil/csv/C24-0418"):
            assert get(base + path)[0] == 200, path


@pytest.mark.parametrize("argv, code, message", [
    (["--db", "{db}", "--host", "0.0.0.0"], 2,
     "inspectd: --host 0.0.0.0: serving beyond this machine needs --token or --token-file"),
    (["--db", "{tmp}/none.db"], 2, "inspectd: --db {tmp}/none.db: no such database file"),
    (["--db", "{tmp}/empty.db"], 2, "inspectd: --db {tmp}/empty.db: not an inspectd store database"),
    (["--db", "{db}", "--token", "short"], 2, "inspectd: --token: at least 8 characters"),
    (["--db", "{db}", "--grades", "{tmp}/grades.yaml"], 2, "inspectd: {tmp}/grades.yaml: grades[0].max_per_100m"),
])
def test_bad_input_is_one_line(demo_db, tmp_path, capsys, argv, code, message):
    import sqlite3
    sqlite3.connect(tmp_path / "empty.db").close()
    (tmp_path / "grades.yaml").write_text("grades:\n  - name: A\n    max_per_100m: {total: -1}\n")
    sub = {"{db}": demo_db, "{tmp}": str(tmp_path)}
    argv = [sub.get(a, a.replace("{tmp}", str(tmp_path))) for a in argv]
    rc = main(["web", *argv])
    out, err = capsys.readouterr()
    assert rc == code and out == ""
    assert err.startswith(message.replace("{tmp}", str(tmp_path))) and err.count("\n") == 1, err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["web", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: inspectd web" in out and "--token" in out and "--grades" in out
