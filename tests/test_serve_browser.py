"""The page at `GET /` in a real headless Chromium (Selenium), against a real `lsllm serve` subprocess on tiny
trained runs: API key prompt, label bars for a classifier, marked entities for a tagger, errors shown, and no
request to any other host. Skipped without chromium + chromedriver, except under CI, where it fails."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from lsllm.serve.process import ServerProcess

PAGE = Path(__file__).resolve().parents[1] / "src" / "lsllm" / "serve" / "page.html"
API_KEY = "browser-test-key"


def _browser_paths() -> tuple[str | None, str | None]:
    binary = os.environ.get("CHROME_BIN") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    return binary, os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, driver) paths; a skip when absent, a failure under CI (which installs them)."""
    binary, driver = _browser_paths()
    missing = [name for name, path in (("chromium", binary), ("chromedriver", driver)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary, driver


@pytest.fixture(scope="session")
def driver(chromium):
    """Headless system Chromium through the system chromedriver (explicit paths: no selenium-manager)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,700",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromium[1]))
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


def _wait(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _only_local_requests(driver, base: str) -> None:
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert names and all(n.startswith(base + "/") for n in names), names


def test_page_is_self_contained():
    html = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"""(@import|url\()\s*["']?\s*(https?:)?//""", html, re.I)
    assert len(html.splitlines()) < 300


def test_classifier_page(chromium, tiny_runs, driver):
    from selenium.webdriver.common.by import By

    labels = (tiny_runs["seq"] / "labels.txt").read_text().split()
    with ServerProcess(tiny_runs["seq"], "--api-key", API_KEY, timeout=120) as server:
        base = server.url
        driver.get(base + "/")
        key = _wait(driver, lambda d: d.find_element(By.ID, "key") if d.find_element(By.ID, "key").is_displayed()
                    else None)
        assert "API key" in driver.find_element(By.ID, "status").text
        key.send_keys(API_KEY)
        driver.find_element(By.ID, "retry").click()
        text = _wait(driver, lambda d: d.find_element(By.ID, "text") if d.find_element(By.ID, "text").is_displayed()
                     else None)
        header = driver.find_element(By.ID, "model").text
        assert driver.find_element(By.CSS_SELECTOR, "#model b").text == tiny_runs["seq"].resolve().name
        assert "sequence classification" in header and all(label in header for label in labels), header

        text.send_keys("the movie was good and fun")
        driver.find_element(By.ID, "submit").click()
        rows = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#result .label-row"))
        assert sorted(r.get_attribute("data-label") for r in rows) == sorted(labels)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#result .label-row.top")) == 1
        percents = [float(re.search(r"([\d.]+)%", r.text).group(1)) for r in rows]
        assert percents == sorted(percents, reverse=True) and abs(sum(percents) - 100) < 0.5, percents
        assert "top" in rows[0].get_attribute("class").split()
        assert not driver.find_element(By.ID, "error").is_displayed()

        # a request the server refuses (422: a NUL character) shows its message in #error
        driver.execute_script("document.getElementById('text').value = 'bad \\u0000 text'")
        driver.find_element(By.ID, "submit").click()
        error = _wait(driver, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed()
                      else None)
        assert "NUL" in error.text
        assert not driver.find_elements(By.CSS_SELECTOR, "#result .label-row")
        _only_local_requests(driver, base)


def test_tagger_page(chromium, tiny_runs, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sentence = "john in paris & <b>london</b> ."
    with ServerProcess(tiny_runs["token"], timeout=120) as server:
        base = server.url
        driver.get(base + "/")
        text = _wait(driver, lambda d: d.find_element(By.ID, "text") if d.find_element(By.ID, "text").is_displayed()
                     else None)
        assert driver.find_element(By.CSS_SELECTOR, "#model b").text == tiny_runs["token"].resolve().name
        assert "token tagging" in driver.find_element(By.ID, "model").text
        text.send_keys(sentence)
        text.send_keys(Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter submits
        tagged = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#result .tagged"))[0]
        marks = driver.execute_script(
            "return [...document.querySelectorAll('#result mark.entity')].map(m => ({type: m.dataset.type, "
            "start: +m.dataset.start, end: +m.dataset.end, text: m.firstChild.textContent, tag: m.lastChild.textContent}))")
        # the text comes back as text (the <b> is not parsed), with each entity's tag after it
        shown = driver.execute_script(
            "const c = document.querySelector('#result .tagged').cloneNode(true);"
            "c.querySelectorAll('.tag').forEach(t => t.remove()); return c.textContent")
        assert shown == sentence and not tagged.find_elements(By.TAG_NAME, "b")
        if marks:
            for m in marks:
                assert m["text"] == sentence[m["start"]:m["end"]] and m["tag"] == m["type"], m
        else:
            assert "no entities found" in driver.find_element(By.ID, "result").text
        assert not driver.find_element(By.ID, "error").is_displayed()
        _only_local_requests(driver, base)
