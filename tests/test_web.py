"""The web page of `clamp serve`, driven in headless Chromium against a real server on loopback.

Needs Debian's `chromium` + `chromium-driver` and pip `selenium`; skips saying so when they are missing.
Screenshots of every panel go to build/screenshots/ for people to look at.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium to test the web page")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "no chromium/chromedriver on PATH: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

from query_corpus import build_corpus  # noqa: E402  (after the skips: it imports torch)
from serving import free_port  # noqa: E402

from runtime.music.abc import split_tunes  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
# 10 O'Neill's jigs (R: and T: on every tune) and 62 Irish songs from Essen (O: Irland).
WEB_CORPUS = ("oneills1850/0721-0730.abc", "essenFolksong/irl.abc")
JIGS = "oneills1850-0721-0730.abc"
WAIT_S = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("web"), WEB_CORPUS)


@contextmanager
def serving(index_dir: Path, log: Path, *options: str) -> Iterator[str]:
    """`clamp serve` as a real subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    clamp = Path(sys.executable).with_name("clamp")
    command = [clamp, "serve", "--index", index_dir, "--host", "127.0.0.1", "--port", str(port), *options]
    with log.open("wb") as out:
        process = subprocess.Popen([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"clamp serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"clamp serve did not answer in 60 s: {log.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(corpus, tmp_path_factory) -> Iterator[str]:
    with serving(corpus.index_dir, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1100,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, server) -> Iterator[webdriver.Chrome]:
    """The page freshly loaded (label sets and health read); after the test, no script errors."""
    browser.set_window_size(1100, 1000)
    browser.get(server + "/")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#label-set option"))
    yield browser
    script_errors = [
        e["message"] for e in browser.get_log("browser") if "Failed to load resource" not in e["message"]
    ]
    assert not script_errors


def wait_for(driver, condition):
    """condition(driver) once truthy; elements replaced while it looks (a page re-rendering) are retried."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def results(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#result-list > .result")


def wait_for_results(driver, heading_start: str) -> list:
    """The result cards once the list under a heading starting with `heading_start` has drawn its scores."""

    def drawn(d):
        cards = results(d)
        heading = d.find_element(By.ID, "results-title").text
        drawn = all(card.find_elements(By.CSS_SELECTOR, ".sheet svg") for card in cards)
        return heading.startswith(heading_start) and drawn and cards

    return wait_for(driver, drawn)


def shoot(driver, name: str) -> None:
    """Save a full-height screenshot of the page as it is now."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height + 120, 4000))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def title(card) -> str:
    return card.find_element(By.CSS_SELECTOR, ".title").text


def test_search_draws_scores_and_more_like_this_follows(page):
    box = page.find_element(By.ID, "search-text")
    box.send_keys("a lively jig in D major", Keys.ENTER)
    cards = wait_for_results(page, "Tunes matching “a lively jig in D major”")
    assert len(cards) == 10
    first = cards[0]
    assert title(first) and "cosine" in first.find_element(By.CSS_SELECTOR, ".similarity").text
    assert first.find_elements(By.CSS_SELECTOR, ".sheet svg path")  # notes were drawn, not just a frame
    shoot(page, "search")

    long = next(card for card in cards if card.find_element(By.CSS_SELECTOR, ".unfold").is_displayed())
    sheet = long.find_element(By.CSS_SELECTOR, ".sheet")
    folded_height = sheet.size["height"]
    long.find_element(By.CSS_SELECTOR, ".unfold").click()  # long scores start folded to their first lines
    assert sheet.size["height"] > folded_height
    play = long.find_element(By.CSS_SELECTOR, ".play")
    play.click()  # offline playback: Web Audio tones from abcjs's note sequence
    assert play.text == "Stop" and play.get_attribute("aria-pressed") == "true"
    play.click()
    assert play.text == "Play"

    chosen = title(cards[3])
    cards[3].find_element(By.CSS_SELECTOR, "button.more").click()
    similar = wait_for_results(page, f"More like “{chosen}”")
    assert similar and chosen not in map(title, similar)  # "more like this" leaves the tune itself out
    assert page.switch_to.active_element.get_attribute("id") == "results-title"
    shoot(page, "more-like-this")


def test_upload_finds_similar_music_and_refusals_read_plainly(page, corpus):
    jigs = corpus.abc_dir / JIGS
    page.find_element(By.ID, "tab-similar").click()
    form = page.find_element(By.ID, "similar-form")
    form.find_element(By.NAME, "file").send_keys(str(jigs))
    tune = form.find_element(By.NAME, "tune")
    tune.clear()
    tune.send_keys("2")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    cards = wait_for_results(page, f"Music like {JIGS} (tune 2)")
    third_tune = split_tunes(jigs.read_text())[2]
    assert len(cards) == 10 and third_tune.meta["title"] not in map(title, cards)  # not the upload itself
    assert cards[0].find_element(By.CSS_SELECTOR, ".similarity").text.startswith("cosine ")
    shoot(page, "similar-upload")

    tune.clear()
    tune.send_keys("99")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, "#status.error").text)
    assert error.startswith(f"Finding music like {JIGS} failed:") and "holds 10 tune(s)" in error


def test_zero_shot_ranks_a_label_set_or_own_labels_as_bars(page, corpus):
    first_jig = split_tunes((corpus.abc_dir / JIGS).read_text())[0].abc
    page.find_element(By.ID, "tab-classify").click()
    page.execute_script("document.getElementById('classify-abc').value = arguments[0]", first_jig)
    page.find_element(By.CSS_SELECTOR, "#label-set option[value='tune-type']").click()
    page.find_element(By.CSS_SELECTOR, "#classify-form button[type=submit]").click()
    bars = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#label-bars .bar"))
    labels = [bar.find_element(By.CSS_SELECTOR, ".bar-label").text for bar in bars]
    assert sorted(labels) == sorted(httpx.get(page.current_url + "label-sets").json()["tune-type"]["labels"])
    widths = [bar.find_element(By.CSS_SELECTOR, ".bar-fill").value_of_css_property("width") for bar in bars]
    assert float(widths[0][:-2]) >= max(float(w[:-2]) for w in widths)  # best first, the longest bar
    assert page.find_elements(By.CSS_SELECTOR, "#classify-score svg")
    shoot(page, "zero-shot")

    own = page.find_element(By.NAME, "labels")
    own.send_keys("jig, reel, waltz")
    page.find_element(By.CSS_SELECTOR, "#classify-form button[type=submit]").click()
    wait_for(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#label-bars .bar")) == 3)
    shown = {e.text for e in page.find_elements(By.CSS_SELECTOR, "#label-bars .bar-label")}
    assert shown == {"jig", "reel", "waltz"}


def test_a_result_opens_in_zero_shot_and_api_errors_read_plainly(page):
    page.find_element(By.ID, "search-text").send_keys("a slow air", Keys.ENTER)
    cards = wait_for_results(page, "Tunes matching")
    cards[0].find_element(By.CSS_SELECTOR, "button.labels").click()
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#label-bars .bar"))
    assert page.find_element(By.ID, "classify-abc").get_attribute("value").startswith("X:")
    assert not page.find_element(By.ID, "results").is_displayed()

    page.find_element(By.ID, "tab-search").click()
    page.find_element(By.CSS_SELECTOR, "#search-form summary").click()
    page.find_element(By.NAME, "filter").send_keys("origin is Irland")
    page.find_element(By.ID, "search-text").send_keys(Keys.ENTER)
    error = wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, "#status.error").text)
    assert error.startswith("Search failed:") and "bad filter" in error
    shoot(page, "error")


def test_keyboard_only_and_a_narrow_screen(page):
    body = page.find_element(By.TAG_NAME, "body")
    page.find_element(By.ID, "tab-search").send_keys(Keys.ARROW_RIGHT)
    assert page.switch_to.active_element.get_attribute("id") == "tab-similar"
    assert page.find_element(By.ID, "panel-similar").is_displayed()
    body.send_keys("/")
    assert page.switch_to.active_element.get_attribute("id") == "search-text"
    assert page.find_element(By.ID, "panel-search").is_displayed()

    page.set_window_size(390, 900)
    page.switch_to.active_element.send_keys("a reel", Keys.ENTER)
    wait_for_results(page, "Tunes matching “a reel”")
    shoot(page, "narrow")
    overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways on a phone-sized screen"


# Makes the page's requests take 3 s (and honour their abort signal), as a loaded server would.
SLOW_FETCH = """
const realFetch = window.fetch;
window.fetch = (url, init) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => realFetch(url, init).then(resolve, reject), 3000);
  init?.signal?.addEventListener("abort", () => {
    clearTimeout(timer);
    reject(new DOMException("aborted", "AbortError"));
  });
});
"""


def test_a_slow_request_spins_and_escape_cancels_it(page):
    page.execute_script(SLOW_FETCH)
    page.find_element(By.ID, "search-text").send_keys("a hornpipe", Keys.ENTER)
    busy = wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#status.busy"))
    assert busy[0].text == "Searching…"
    shoot(page, "spinner")
    page.find_element(By.ID, "search-text").send_keys(Keys.ESCAPE)
    assert not page.find_element(By.ID, "status").is_displayed()
    time.sleep(3.2)  # the cancelled answer would have arrived by now
    assert not page.find_element(By.ID, "results").is_displayed()


def test_a_server_with_an_api_key_asks_for_it_once(browser, corpus, tmp_path):
    with serving(corpus.index_dir, tmp_path / "serve.log", "--api-key", "s3cret") as url:
        assert httpx.post(f"{url}/search", json={"text": "a jig"}).status_code == 401
        browser.get(url + "/")  # the page's first API call (the label sets) is refused: it asks for the key
        prompt = wait_for(browser, expected_conditions.alert_is_present())
        prompt.send_keys("s3cret")
        prompt.accept()
        browser.find_element(By.ID, "search-text").send_keys("a reel", Keys.ENTER)
        assert len(wait_for_results(browser, "Tunes matching “a reel”")) == 10
        browser.find_element(By.ID, "search-text").clear()
        browser.find_element(By.ID, "search-text").send_keys("an air", Keys.ENTER)
        assert len(wait_for_results(browser, "Tunes matching “an air”")) == 10  # the key is kept: no prompt
