"""`evoforge report`: the HTML page, checked as text and as rendered by headless Chromium."""

import base64
import os
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from evoforge.archive import Run
from evoforge.engine.config import RunConfig
from evoforge.engine.session import start_run
from fakes.tasks import write_tiny_task

SECTIONS = ("summary", "best-program", "progress", "heatmap", "lineage", "costs", "failures")
PLOTS = ("progress-plot", "heatmap-plot", "spend-plot", "status-plot")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


class _Page(HTMLParser):
    """Elements by id, and the text inside each, from an HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: dict[str, dict] = {}
        self.tags: list[str] = []
        self._open: list[tuple[str, str | None]] = []
        self.text: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids[attrs["id"]] = {"tag": tag, **attrs}
            self.text.setdefault(attrs["id"], "")
        if tag not in ("img", "meta", "br"):
            self._open.append((tag, attrs.get("id")))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, element_id in self._open:
            if element_id:
                self.text[element_id] += data


def _png_size(uri: str) -> tuple[int, int]:
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run through the real openai SDK against a fake server: good edits (one carrying markup in a
    comment, to check escaping), edits that do not apply, and an edit that crashes the candidate."""
    from fakes.openai_server import FakeOpenAIServer

    base = tmp_path_factory.mktemp("report")
    task = write_tiny_task(base / "tiny", islands=1)
    calls = []

    def reply(body):
        calls.append(body)
        a = float(re.search(r"a = ([0-9.]+)", body["messages"][1]["content"]).group(1))
        kind = len(calls) % 4
        if kind == 1:
            return f"<<<<<<< SEARCH\n    a = {a}\n=======\n    a = {a + 0.5}  # <b>raise</b> a\n>>>>>>> REPLACE\n"
        if kind == 2:
            return "<<<<<<< SEARCH\n    c = 9\n=======\n    c = 1\n>>>>>>> REPLACE\n"
        if kind == 3:
            return "<<<<<<< SEARCH\n    b = 0.25\n=======\n    b = 1 / 0\n>>>>>>> REPLACE\n"
        return "No change today."

    with FakeOpenAIServer(reply) as server:
        config = RunConfig(task=str(task), iterations=12, concurrency=1, seed=1,
                           llm=(f"openai-compatible:fake-coder@{server.base_url}",))
        start_run(config, out=base / "run")
    return base / "run"


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "report.html"
    done = subprocess.run([sys.executable, "-m", "evoforge", "report", str(run_dir), "-o", str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    return out


def test_report_has_every_section_and_embedded_plots(report, run_dir):
    html = report.read_text()
    page = _Page(html)
    for section in SECTIONS:
        assert page.ids[section]["tag"] == "section"
    for plot in PLOTS:
        width, height = _png_size(page.ids[plot]["src"])
        assert width > 200 and height > 150
    # Self-contained: every image inline, no stylesheet, script or frame to fetch.
    assert all(page.ids[p]["src"].startswith("data:") for p in PLOTS) and html.count("<img") == len(PLOTS)
    assert not {"link", "script", "iframe"} & set(page.tags)
    with Run.open(run_dir) as run:
        best = run.best()
        lineage = run.lineage(best.id)
        assert page.text["best-score"].strip() == f"{best.score:.6g}"
        assert page.text["best-code"] == best.code           # escaped markup comes back as the same text
        assert "<b>raise</b>" in best.code and "&lt;b&gt;raise&lt;/b&gt;" in html
        assert html.count('class="lineage-diff"') == len(lineage) - 1
        statuses = set(run.programs()["status"])
    assert {"ok", "rejected", "error"} <= statuses
    assert html.count('class="failure-row"') == len(statuses - {"ok"})
    assert "ZeroDivisionError" in page.text["failures"]
    assert "openai-compatible:fake-coder" in page.text["costs"]


def test_report_of_a_missing_run_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "evoforge", "report", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no such run directory" in done.stderr


def test_default_output_is_in_the_run_directory(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    from evoforge.engine.report import write_report

    assert write_report(copy) == copy / "report.html"
    assert set(SECTIONS) <= set(_Page((copy / "report.html").read_text()).ids)
    assert not (copy / "report.html.partial").exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    # The page as the browser builds it, plus each image's decoded size written into the DOM by a
    # script appended to a copy of the page (the report itself runs no script).
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => { const p = document.createElement('pre');"
        " p.id = 'decoded'; p.textContent = [...document.images].map(i => i.id + '=' + i.naturalWidth + 'x'"
        " + i.naturalHeight + ':' + i.complete).join(' '); document.body.appendChild(p); });</script></body>")))
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _Page(dom.stdout)
    for section in SECTIONS:
        assert page.ids[section]["tag"] == "section", f"section {section} missing from the rendered DOM"
    decoded = dict(item.split("=") for item in page.text["decoded"].split())
    for plot in PLOTS:
        size, complete = decoded[plot].split(":")
        width, height = (int(v) for v in size.split("x"))
        assert complete == "true" and (width, height) == _png_size(page.ids[plot]["src"])
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*common, "--window-size=1200,4000", f"--screenshot={screenshot}", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    artifacts = os.environ.get("EVOFORGE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / "report.png")
        shutil.copy(report, Path(artifacts) / "report.html")
