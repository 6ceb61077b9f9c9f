"""The HTML report (``audiobench report``) and the MUSHRA listening test (``audiobench listen``,
``audiobench table --mos``), driven in a real headless Chromium (Debian's, through Selenium) on a small
real run whose class names, sample ids and method labels hold HTML."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sqlite3
import threading
import urllib.parse
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from audiobench.cli import main
from tests.paths import TESTS

HERE = TESTS
PLUGIN = HERE / "plugins" / "report_data.py"
SUITE = {
    "name": "hostile",
    "seed": 0,
    "dataset": {"name": "hostile_tones", "clips": 16, "seconds": 0.5},
    "frontend": {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 32},
    "model": {"name": "cnn14", "width": 4, "depth": 2, "train": {"epochs": 6, "batch_size": 8}},
    "batch_size": 8,
    "domains": ["stft2mel", "mel"],
    "contaminations": ["none", {"name": "white_noise", "snr_db": 5}],
    "methods": [{"name": "saliency", "label": "<i>Saliency</i>"}, "gradcam",
                {"name": "l2i", "k": 6, "epochs": 2, "nmf_iter": 10, "blocks": 2, "rt": 0.1}, "random"],
    "metrics": ["ai", "ad", "ff", "fid_in", "sps", "mm"],
    "audio": {"n": 2},
    "plugins": [str(PLUGIN)],
}
HOSTILE_CLASS = "<script>window.pwned = 'class'</script>"
PLAY_ALL = """
    const done = arguments[arguments.length - 1];
    const all = [...document.querySelectorAll(arguments[0])];
    Promise.all(all.map(a => new Promise(ok => {
        a.addEventListener('error', () => ok({src: a.src, error: a.error.code}));
        a.addEventListener('timeupdate', () => { if (a.currentTime > 0) { a.pause(); ok({src: a.src, t: a.currentTime, d: a.duration}); } });
        a.play().catch(e => ok({src: a.src, error: String(e)}));
    }))).then(done);"""  # play every audio element matching a selector; each reports its time or its error


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE, allow_unicode=True))
    assert main(["run", str(root / "suite.yaml"), "-o", str(root / "run"), "-q"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    assert main(["report", str(run_dir)]) == 0
    return run_dir / "report" / "index.html"


@pytest.fixture(scope="module")
def browser():
    from tests.browser import available, chromium

    missing = available()
    if missing:
        if _in_ci():
            pytest.fail(f"headless Chromium not installed in CI: {missing}")
        pytest.skip(f"headless Chromium not installed ({missing}; in CI this test fails)")
    driver = chromium()
    yield driver
    driver.quit()


def _server(run_dir: Path):
    from werkzeug.serving import make_server

    from audiobench.listen.server import create_app

    srv = make_server("127.0.0.1", 0, create_app(run_dir), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def server(run_dir: Path):
    srv = _server(run_dir)
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def _ratings(run_dir: Path, listener: str | None = None) -> list[tuple]:
    with sqlite3.connect(run_dir / "listening.sqlite") as conn:
        q = "SELECT listener, trial, stimulus, score, position FROM ratings"
        return conn.execute(q + " WHERE listener = ?", (listener,)).fetchall() if listener else conn.execute(q).fetchall()


# -- report -------------------------------------------------------------------------------------


def _rows(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('tr.clip-row')].map(tr => ({
            sid: tr.querySelector('.sid').textContent, cond: tr.querySelector('.clip .muted').textContent,
            truth: tr.querySelector('.true').textContent, pred: tr.querySelector('.pred').textContent,
            dis: tr.querySelector('.dis').textContent, methods: tr.querySelectorAll('td.method').length}));""")


def test_report_opens_from_disk_fast_and_escapes_everything(report: Path, browser) -> None:
    browser.get(report.as_uri())
    timing = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd];")
    assert 0 < timing[1] < 5000, timing  # ms; a small run loads far below the 2 s the quickstart must meet
    assert browser.execute_script("return window.pwned === undefined") is True  # no injected script or handler ran
    rows = _rows(browser)
    assert len(rows) == 10  # the first page of 2 domains x 2 conditions x 16 clips
    shown = browser.execute_script("return [...document.querySelectorAll('.true')].map(e => e.textContent).join('|')")
    assert HOSTILE_CLASS in shown  # rendered as text, not as a script element
    assert rows[0]["sid"].startswith("test<img src=x onerror=window.pwned=1>")
    assert not browser.find_elements("css selector", "#clips script, #clips img:not(.map), #tables i")
    headers = browser.execute_script("return [...document.querySelectorAll('#clips th')].map(e => e.textContent)")
    assert headers == ["clip", "<i>Saliency</i>", "GradCAM", "L2I, RT=0.1", "Random"]
    assert "<i>Saliency</i>" in browser.find_element("id", "tables").text
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    links = browser.execute_script("return [...document.querySelectorAll('[src], [href]')].map(e => e.src || e.href)")
    assert links and all(u.startswith("file://") for u in links)  # every image and audio beside it: no network, no CDN
    assert not browser.find_elements("css selector", "script[src], link[rel=stylesheet]")  # scripts and styles inline


def test_report_audio_and_images_load_and_play(report: Path, browser) -> None:
    browser.get(report.as_uri())
    browser.find_element("id", "f-audio").click()  # only the clips the run kept as audio
    rows = _rows(browser)
    assert len(rows) == 2 * 2 * 2  # audio.n clips x 2 conditions x 2 domains
    n_audio = browser.execute_script("return document.querySelectorAll('#clips audio').length")
    # per stft2mel row: the input, 4 interpretations and L2I's parts; per mel row: the input only
    assert n_audio >= 4 * (1 + 4) + 4
    played = browser.execute_async_script(PLAY_ALL, "#clips audio")
    assert len(played) == n_audio and all("error" not in p and p["t"] > 0 and p["d"] > 0.4 for p in played), played
    imgs = browser.execute_script("""
        const all = [...document.querySelectorAll('#clips img')];
        all.forEach(i => i.loading = 'eager');
        return all.length;""")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return [...document.querySelectorAll('#clips img')].every(i => i.complete)"))
    loaded = browser.execute_script(
        "return [...document.querySelectorAll('#clips img')].filter(i => i.complete && i.naturalWidth === 160).length")
    assert imgs == loaded == len(rows) * 4 + 8  # a mask per method, a spectrogram per row with audio


def test_report_filters(report: Path, browser) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(report.as_uri())
    labels = [o.text for o in Select(browser.find_element("id", "f-condition")).options]
    Select(browser.find_element("id", "f-condition")).select_by_index(3)  # the second condition of stft2mel... any one
    assert {r["cond"] for r in _rows(browser)} == {labels[3]}
    Select(browser.find_element("id", "f-condition")).select_by_index(0)
    Select(browser.find_element("id", "f-class")).select_by_visible_text(HOSTILE_CLASS)
    assert all(HOSTILE_CLASS in r["truth"] + r["pred"] for r in _rows(browser))
    Select(browser.find_element("id", "f-class")).select_by_index(0)
    browser.find_element("css selector", "input[data-method='1']").click()  # hide GradCAM
    assert {r["methods"] for r in _rows(browser)} == {3}
    assert "GradCAM" not in browser.execute_script("return [...document.querySelectorAll('#clips th')].map(e => e.textContent)")
    Select(browser.find_element("id", "f-order")).select_by_value("disagree")
    dis = [float(r["dis"].split(": ")[1]) for r in _rows(browser)]
    everything = json.loads(browser.execute_script("return JSON.stringify(D.rows.map(r => r.dis))"))
    assert dis == sorted(dis, reverse=True) and dis[0] == pytest.approx(max(v for v in everything if v is not None), abs=1e-3)
    browser.find_element("id", "next").click()
    assert float(_rows(browser)[0]["dis"].split(": ")[1]) <= dis[-1]


def test_report_shows_prompts_of_a_zero_shot_run(run_dir: Path, tmp_path: Path, browser) -> None:
    copy = tmp_path / "zs"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "listening.sqlite*"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["prompts"] = [f"this is the sound of {c}" for c in manifest["classes"]]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(copy)]) == 0
    browser.get((copy / "report" / "index.html").as_uri())
    assert f"prompt: “this is the sound of {HOSTILE_CLASS}”" in browser.execute_script(
        "return [...document.querySelectorAll('#clips .true')].map(e => e.textContent).join('|')")
    assert browser.execute_script("return window.pwned === undefined") is True


def test_disagreement_known_answers() -> None:
    from audiobench.report.build import _disagreement

    a = np.array([0.0, 1.0, 2.0, 3.0])
    grids = np.stack([
        np.stack([a, a, 2 * a + 1]),  # identical up to scale: r = 1 everywhere -> 0
        np.stack([a, -a, np.full(4, np.nan)]),  # r = -1, third method missing -> 2
        np.stack([a, np.ones(4), a]),  # a constant mask has no correlation: left out -> 0
        np.stack([a, np.array([0.0, 1.0, 0.0, 1.0]), np.full(4, np.nan)]),  # r = 2/sqrt(20) (by hand)
    ])
    np.testing.assert_allclose(_disagreement(grids), [0.0, 2.0, 0.0, 1 - 2 / np.sqrt(20)], atol=1e-12)


def test_markdown_tables_become_escaped_html_with_bold_kept() -> None:
    from audiobench.report import markdown_table_html

    md = ("Table: a <b> caption\n\n| Method | AI↑ |\n|:--|--:|\n| <script>x</script> \\| y | **1.00** |\n"
          "| z | 0.50 ± 0.10 |\n")
    out = markdown_table_html(md)
    assert "<caption>a &lt;b&gt; caption</caption>" in out
    assert "<td>&lt;script&gt;x&lt;/script&gt; | y</td><td><strong>1.00</strong></td>" in out
    assert "<td>0.50 ± 0.10</td>" in out


# -- listening test -----------------------------------------------------------------------------


def _trial_page(browser) -> str:
    # read in one script: the page replaces its elements when a trial is submitted
    return browser.execute_script("const e = document.getElementById('trial-title'); return e && e.dataset.trial;")


def _rate(browser, values: dict[str, int], order_of) -> str:
    """Set every slider of the current trial to the value of the stimulus it hides; submit; the trial id."""
    from selenium.webdriver.support.ui import WebDriverWait

    trial = _trial_page(browser)
    order = order_of(trial)
    sliders = browser.find_elements("css selector", "input.rating")
    assert len(sliders) == len(order)
    for k, s in enumerate(sliders):
        v = values.get(order[k], values["*"])
        browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", s, v)
    browser.find_element("id", "submit").click()
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return !!document.getElementById('done')")
                                     or _trial_page(d) not in (None, trial))
    return trial


def _orders(run_dir: Path, listener: str):
    from audiobench.listen.trials import load_trials, trial_order

    trials = {t.id: t for t in load_trials(run_dir)}
    return [t.id for t in trial_order(list(trials.values()), listener)], lambda tid: trials[tid].order(listener)


def test_a_complete_session_is_stored_and_summarised(run_dir: Path, server: str, browser, capsys) -> None:
    values = {"reference": 95, "anchor": 10, "<i>Saliency</i>": 70, "GradCAM": 40, "*": 55}
    trial_ids, order_of = _orders(run_dir, "alice")
    browser.get(f"{server}/")
    browser.find_element("id", "listener").send_keys("alice")
    browser.find_element("id", "start").click()
    begin = _wait(browser, "begin")
    assert "How well does the interpretation correspond" in browser.find_element("tag name", "body").text
    begin.click()
    played = browser.execute_async_script(PLAY_ALL, "audio")  # the reference and every hidden stimulus play
    assert len(played) == 1 + len(order_of(trial_ids[0])), played
    assert all("error" not in p and p["t"] > 0 and p["d"] > 0.4 for p in played), played
    from audiobench.listen.trials import load_trials

    predicted = {t.id: t.predicted for t in load_trials(run_dir)}
    assert any("<" in p for p in predicted.values())  # the hostile class names reach the page
    seen = []
    for _ in trial_ids:  # the predicted class is shown, as text
        assert browser.execute_script("return document.getElementById('predicted').textContent") == \
            predicted[_trial_page(browser)]
        seen.append(_rate(browser, values, order_of))
    assert seen == trial_ids and browser.find_element("id", "done")
    assert browser.execute_script("return window.pwned === undefined") is True
    rows = _ratings(run_dir, "alice")
    n_stimuli = sum(len(order_of(t)) for t in trial_ids)
    assert len(rows) == n_stimuli == len(trial_ids) * 5
    assert all(score == values.get(stim, values["*"]) for _, _, stim, score, _ in rows)
    capsys.readouterr()
    assert main(["table", str(run_dir), "--mos", "--format", "csv"]) == 0
    mos = pd.read_csv(StringIO(capsys.readouterr().out))
    for stim, name in [("reference", "Hidden reference"), ("anchor", "Anchor (Random)"), ("<i>Saliency</i>", "<i>Saliency</i>"),
                       ("GradCAM", "GradCAM")]:
        got = mos[mos["method"] == name]
        assert len(got) == 2 and (got["mean"] == values.get(stim)).all()  # every rating equal: CI of width 0
        assert np.allclose(got["ci_low"], got["mean"]) and (got["n"] == len(trial_ids) // 2).all()


def _wait(browser, element_id: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 10).until(lambda d: d.find_elements("id", element_id))[0]


def test_a_listener_who_stops_resumes_where_they_were(run_dir: Path, server: str, browser) -> None:
    from tests.browser import chromium
    trial_ids, order_of = _orders(run_dir, "bob")
    others = [r for r in _ratings(run_dir) if r[0] != "bob"]
    first = chromium()
    try:
        first.get(f"{server}/?listener=bob")
        _wait(first, "begin").click()
        assert [_rate(first, {"*": 100}, order_of) for _ in range(2)] == trial_ids[:2]
    finally:
        first.quit()  # bob closes the browser after two pages
    again = chromium()
    try:
        again.get(f"{server}/?listener=bob")
        _wait(again, "trial-title")
        assert _trial_page(again) == trial_ids[2]  # no training page again, the third page of his order
        assert again.find_element("id", "trial-title").text.startswith("Page 3 of")
    finally:
        again.quit()
    assert {t for _, t, *_ in _ratings(run_dir, "bob")} == set(trial_ids[:2])
    assert [r for r in _ratings(run_dir) if r[0] != "bob"] == others  # listeners are kept apart


def _post(url: str, body: object, content_type: str = "application/json") -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    conn.request("POST", "/api/rate", body=data, headers={"Content-Type": content_type})
    resp = conn.getresponse()
    text = resp.read()
    return resp.status, json.loads(text) if text.startswith(b"{") else {}


def test_bad_ratings_are_refused_and_store_nothing(run_dir: Path, server: str) -> None:
    trial_ids, order_of = _orders(run_dir, "dave")
    n = len(order_of(trial_ids[0]))
    good = {"listener": "dave", "trial": trial_ids[0], "scores": [50] * n}
    before = _ratings(run_dir)
    cases = [
        ({**good, "scores": [50] * (n - 1) + [101]}, 422),
        ({**good, "scores": [50] * (n - 1) + [-1]}, 422),
        ({**good, "scores": [50] * (n - 1) + [50.5]}, 422),
        ({**good, "scores": [50] * (n - 1) + [True]}, 422),
        ({**good, "scores": [50] * (n - 1) + ["50"]}, 422),
        ({**good, "scores": [50] * (n + 1)}, 400),
        ({**good, "scores": "50"}, 400),
        ({**good, "trial": "../../etc/passwd"}, 404),
        ({**good, "listener": ""}, 400),
        ({**good, "listener": "x" * 65}, 400),
        ({**good, "extra": 1}, 400),
        ([1, 2], 400),
        ("{not json", 400),
    ]
    for body, status in cases:
        got, reply = _post(server, body)
        assert got == status and reply.get("error"), (body, got, reply)
    assert _post(server, good, "text/plain")[0] == 415
    assert _ratings(run_dir) == before
    assert _post(server, good)[0] == 200
    assert _post(server, {**good, "scores": [10] * n})[0] == 409  # a second rating of the same trial
    assert sorted(r[3] for r in _ratings(run_dir, "dave")) == [50] * n


@pytest.mark.parametrize("path", [
    "/audio/../../etc/passwd", "/audio/t001/..%2F..%2F..%2Fetc%2Fpasswd?listener=x", "/../../etc/passwd",
    "/audio/%2e%2e/%2e%2e/etc/passwd?listener=x", "/audio/t001/ref/../../../../etc/passwd?listener=x",
    "/audio/t001/-1?listener=x", "/audio/t001/99?listener=x", "/audio/t001/0?listener=",
])
def test_no_file_outside_the_run_is_served(server: str, path: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)  # sent as written: no client-side normalisation of ../
    resp = conn.getresponse()
    body = resp.read()
    assert 400 <= resp.status < 500 and b"root:" not in body and b"RIFF" not in body


def test_requests_for_another_host_name_are_refused(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/test?listener=x", headers={"Host": f"attacker.example:{port}"})
    resp = conn.getresponse()
    assert resp.status == 403 and b"trials" not in resp.read()


def test_audio_served_is_the_trials_own(run_dir: Path, server: str) -> None:
    from audiobench.listen.trials import load_trials

    t = load_trials(run_dir)[0]
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    order = t.order("erin")
    for k in (order.index("reference"), "ref"):
        conn.request("GET", f"/audio/{t.id}/{k}?listener=erin")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == (run_dir / t.reference).read_bytes()


def test_post_screening_and_confidence_intervals(tmp_path: Path, run_dir: Path, capsys) -> None:
    """Hand-computed MOS: ratings 60, 70, 80 -> mean 70, s 10, 95% CI 70 ± t(0.975, 2)·10/√3 = 70 ± 24.84;
    a listener rating the hidden reference below 90 on 1 trial of 3 (33% > 15%) is excluded."""
    from audiobench.listen.server import SCHEMA

    copy = tmp_path / "run"
    copy.mkdir()
    shutil.copy(run_dir / "manifest.json", copy / "manifest.json")
    with sqlite3.connect(copy / "listening.sqlite") as conn:
        conn.executescript(SCHEMA)
        rows = []
        for listener, ref, score in [("a", [100, 95, 90], [60, 70, 80]), ("b", [100, 80, 100], [0, 0, 0])]:
            for i in range(3):
                rows += [(listener, f"t{i}", "none", f"s{i}", "reference", ref[i], 0, 0.0),
                         (listener, f"t{i}", "none", f"s{i}", "GradCAM", score[i], 1, 0.0)]
        conn.executemany("INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    assert main(["table", str(copy), "--mos"]) == 0
    out = capsys.readouterr().out
    assert "1 listeners of 2 kept; 1 excluded by MUSHRA post-screening" in out
    line = next(x for x in out.splitlines() if x.startswith("| GradCAM"))
    assert "70.0 ± 24.8" in line
    ref = next(x for x in out.splitlines() if x.startswith("| Hidden reference"))
    assert "95.0 ± 12.4" in ref  # 100, 95, 90: s = 5, t·5/√3 = 12.42
    assert main(["table", str(copy), "--mos", "--format", "latex"]) == 0
    assert r"70.0 $\pm$ 24.8" in capsys.readouterr().out


def test_mos_without_a_listening_test_is_a_one_line_error(tmp_path: Path, run_dir: Path, capsys) -> None:
    shutil.copy(run_dir / "manifest.json", tmp_path / "manifest.json")
    assert main(["table", str(tmp_path), "--mos"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no listening test results" in err[0]


def test_listen_command_serves_on_loopback_only(run_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.request

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "listening.sqlite*"))
    proc = subprocess.Popen([sys.executable, "-m", "audiobench", "listen", str(copy), "--port", "0", "--listener", "a b"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        import select

        ready, _, _ = select.select([proc.stdout], [], [], 120)  # never hang the suite on a server that did not start
        assert ready, "audiobench listen printed nothing within 120 s"
        line = proc.stdout.readline()
        url = line.split("open ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/?listener=a%20b"), line
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and b"Listening test" in resp.read()
        assert (copy / "listening.sqlite").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_report_and_listen_refuse_what_is_not_a_run(tmp_path: Path, run_dir: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished audiobench run" in err[0]
    copy = tmp_path / "noaudio"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "listening.sqlite*", "audio"))
    assert main(["listen", str(copy), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "kept no listenable interpretations" in err[0]
    for bad in (["--port", "70000"], ["--listener", "\x01"]):
        assert main(["listen", str(run_dir), *bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("--port" in err[0] or "--listener" in err[0]), err


def test_mask_images_put_high_frequencies_on_top_on_one_colour_scale(tmp_path: Path) -> None:
    import torch
    from matplotlib import colormaps
    from PIL import Image

    from audiobench.report.images import MASK_CMAP, to_grid, write_pngs

    mask = torch.zeros(2, 1, 40, 64)  # [N, 1, T, F]
    mask[0, 0, :, 48:] = 1.0  # the top quarter of the bands, all the time
    mask[1, 0, 20:, :] = 0.5  # the second half of the time, every band
    grid = to_grid(mask, size=(20, 8))
    np.testing.assert_allclose(grid[0, :2], 1.0)
    np.testing.assert_allclose(grid[0, 2:], 0.0)
    np.testing.assert_allclose(grid[1, :, 10:], 0.5)
    np.testing.assert_allclose(grid[1, :, :10], 0.0)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    write_pngs(grid, paths, MASK_CMAP)
    a, b = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in paths)
    expected = np.rint(np.array(colormaps[MASK_CMAP](np.array([0.0, 1.0, 128 / 255]))[:, :3]) * 255)
    assert (a[0, 0] == expected[1]).all() and (a[-1, 0] == expected[0]).all() and (b[0, 0] == expected[0]).all()
    assert (b[0, -1] == expected[2]).all()  # 0.5 -> code 128 of the same palette in every image


def test_report_of_a_multi_label_run_with_a_plugin_method(tmp_path: Path, browser) -> None:
    """A sigmoid model (two targets per clip, each with its own interpretation WAV) and a method from a plugin
    file (examples/time_occlusion.py): one report row per (clip, target), every WAV found, the plugin's column."""
    suite = {
        "name": "multi", "seed": 0, "plugins": [str(HERE / "plugins" / "toy_models.py"),
                                                 str(HERE.parent / "examples" / "time_occlusion.py")],
        "dataset": {"name": "tones", "events": 2, "clips": 4}, "model": {"name": "band_sigmoid"},
        "domains": ["stft2mel"], "contaminations": ["none"], "batch_size": 4, "audio": {"n": 2},
        "methods": ["saliency", "time_occlusion", "random"], "metrics": ["ai", "ff"],
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    assert main(["run", str(tmp_path / "suite.yaml"), "-o", str(tmp_path / "run"), "-q"]) == 0
    assert main(["report", str(tmp_path / "run")]) == 0
    browser.get((tmp_path / "run" / "report" / "index.html").as_uri())
    data = browser.execute_script("return D")
    assert data["methods"] == ["Saliency", "Time occlusion", "Random"]
    assert len(data["rows"]) == 4 * 2  # two detected labels per clip
    with_audio = [r for r in data["rows"] if r["input"]]
    assert len(with_audio) == 2 * 2 and all(m and m.get("wav") for r in with_audio for m in r["m"])
    wavs = {m["wav"] for r in with_audio for m in r["m"]}
    assert len(wavs) == 4 * 3  # each (clip, target) row has its own interpretation, per method
    from audiobench.listen.trials import load_trials

    trials = load_trials(tmp_path / "run")
    assert len(trials) == 2 and all(set(t.stimuli) == {"reference", "anchor", "Saliency", "Time occlusion"} for t in trials)


def test_webmushra_export_holds_the_same_trials_escaped(run_dir: Path, tmp_path: Path) -> None:
    import html

    from audiobench.listen.trials import load_trials

    assert main(["listen", str(run_dir), "--webmushra", str(tmp_path / "hostile_test")]) == 0
    config = yaml.safe_load((tmp_path / "hostile_test" / "hostile_test.yaml").read_text())
    trials = load_trials(run_dir)
    pages = config["pages"]
    assert [p["type"] for p in pages] == ["generic", *["mushra"] * len(trials), "finish"]
    for t, page in zip(trials, pages[1:-1], strict=True):
        assert page["id"] == t.id and "<" not in page["name"] and html.unescape(page["name"]) == f"Predicted class: {t.predicted}"
        assert set(page["stimuli"]) == set(t.stimuli) - {"reference"}
        for stimulus, path in [("reference", page["reference"]), *page["stimuli"].items()]:
            assert path.startswith("configs/hostile_test/audio/")
            copied = tmp_path / "hostile_test" / "audio" / Path(path).name
            assert copied.read_bytes() == (run_dir / t.stimuli[stimulus]).read_bytes()


def test_the_cli_chooses_the_rated_rows_and_the_page_size(run_dir: Path, tmp_path: Path, capsys) -> None:
    """--method (repeatable, labels with any character) and --per-page reach the exported experiment."""
    assert main(["listen", str(run_dir), "--method", "GradCAM", "--method", "<i>Saliency</i>", "--per-page", "1",
                 "--webmushra", str(tmp_path / "chosen")]) == 0
    pages = yaml.safe_load((tmp_path / "chosen" / "chosen.yaml").read_text())["pages"][1:-1]
    rated = [set(p["stimuli"]) - {"anchor"} for p in pages]
    assert rated and all(len(r) == 1 for r in rated) and set().union(*rated) == {"GradCAM", "<i>Saliency</i>"}
    assert all("anchor" in p["stimuli"] for p in pages)
    capsys.readouterr()
    assert main(["listen", str(run_dir), "--method", "LIME", "--webmushra", str(tmp_path / "x")]) == 1
    assert "--method: no listenable interpretations of 'LIME' in this run" in capsys.readouterr().err


def test_listener_names_are_normalised_and_every_api_error_is_json(run_dir: Path, server: str) -> None:
    """../shared/cases/listen-listener-identity: "Zoë" typed precomposed or decomposed is one listener;
    names with no visible character or with format / bidi control characters are refused; 405 and 413
    answer in JSON like every other error."""
    for bad in ("\u200b", "\u202eevil", "   ", "a\u200db"):
        status, body = _post(server, {"listener": bad, "trial": "t001", "scores": [50]})
        assert status == 400 and "listener must be" in body["error"], (bad, status, body)
    nfc, nfd = "Zo\u00eb", "Zoe\u0308"
    trial_ids, order_of = _orders(run_dir, nfc)
    status, _ = _post(server, {"listener": nfc, "trial": trial_ids[0], "scores": [50] * len(order_of(trial_ids[0]))})
    assert status == 200
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/api/test?listener=" + urllib.parse.quote(nfd))
    listed = json.loads(conn.getresponse().read())
    assert [t["done"] for t in listed["trials"] if t["id"] == trial_ids[0]] == [True]  # the same listener
    conn.request("POST", "/api/test", body="{}", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Content-Type").startswith("application/json") and "error" in json.loads(resp.read())
    conn.request("POST", "/api/rate", body="x" * 70_000, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 413 and resp.getheader("Content-Type").startswith("application/json") and "error" in json.loads(resp.read())
