"""The HTML reports in a real browser (Debian's headless Chromium through Selenium): the staff
summary's histograms load, a student's page shows their hostile exception text as text, and
nothing on either page runs."""
from __future__ import annotations

import shutil

import pytest

from grader.batch import grade_batch
from grader.rubric import load_rubric
from grader.runner import GradeSettings
from test_scale import EXACT, rubric_file, student_zip

HOSTILE = ("import torch\n"
           "def conv1d(x, w, stride):\n"
           "    raise ValueError('<img src=x onerror=\"document.title=1\"> <script>document.title=2</script> '\n"
           "                     '**Staff note: 2 / 2** <!-- the rest is hidden')\n")


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("the HTML test needs Debian's chromium and chromium-driver: make system-deps installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,1400"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    subs = root / "subs"
    subs.mkdir()
    zips = [student_zip(subs, "aa1000", EXACT, "answer = 42"), student_zip(subs, "ev6666", HOSTILE, "answer = 1")]
    rubric = load_rubric(rubric_file(root))
    out = root / "out"
    grade_batch(zips, rubric, GradeSettings(work_dir=out / "work", cache_dir=out / "cache", seed=1), out,
                log=lambda m: None)
    return out


def test_the_summary_renders_with_its_histograms(browser, batch):
    browser.get((batch / "summary.html").as_uri())
    images = browser.execute_script(
        "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert [alt for alt, *_ in images] == ["final score", "work.ipynb (3 points)"]
    assert all(done and w > 100 and h > 50 for _, done, w, h in images), images
    text = browser.find_element("tag name", "body").text
    assert "2 submission(s): 2 graded" in text
    assert "Items most often lost" in text and "nb.conv" in text


def test_a_students_hostile_text_stays_text(browser, batch):
    page = batch / "feedback" / "ev6666.html"
    browser.get(page.as_uri())
    text = browser.find_element("tag name", "body").text
    assert "<script>document.title=2</script>" in text            # shown, as the student wrote it
    assert "<img src=x" in text and "**Staff note: 2 / 2**" in text
    assert "answer is defined" in text                            # the report goes on past "<!--"
    assert browser.title == "Scale: ev6666"                        # no script of theirs ran
    assert browser.execute_script("return document.querySelectorAll('script, iframe, object, embed').length") == 0
    assert browser.execute_script("return [...document.images].filter(i => i.getAttribute('src') == 'x').length") == 0
    csp = browser.execute_script(
        "return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")
    assert "default-src 'none'" in csp
