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
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium to test the web page")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "no chromium/chromedriver on PATH: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

from query_corpus import build_corpus, corpus_path  # noqa: E402  (after the skips: it imports torch)
from serving import free_port  # noqa: E402
from serving import serving as local_serving  # noqa: E402

from runtime.music.abc import split_tunes  # noqa: E402
from runtime.search.index import Index  # noqa: E402
from runtime.serve.server import create_app  # noqa: E402

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
    permissions = ["clipboardReadWrite", "clipboardSanitizedWrite"]
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": server, "permissions": permissions})
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
    """The result lines once the list under a heading starting with `heading_start` is shown."""

    def listed(d):
        heading = d.find_element(By.ID, "results-title")
        return heading.is_displayed() and heading.text.startswith(heading_start) and results(d)

    return wait_for(driver, listed)


def unfold(line):
    """Click a result line; its details once its score is drawn."""
    line.find_element(By.CSS_SELECTOR, ".line").click()
    detail = line.find_element(By.CSS_SELECTOR, ".detail")
    WebDriverWait(line.parent, WAIT_S).until(
        lambda d: detail.find_elements(By.CSS_SELECTOR, ".sheet svg path")
    )
    return detail


def status_error(driver) -> str:
    return wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#status.error").text)


def shoot(driver, name: str) -> None:
    """Save a full-height screenshot of the page as it is now."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height + 120, 4000))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def title(line) -> str:
    return line.find_element(By.CSS_SELECTOR, ".title").text


def text_of(element) -> str:
    """An element's text, shown or not (selenium's .text is empty for hidden elements)."""
    return element.get_attribute("textContent").strip()


def api_search(page, text: str, k: int) -> list[dict]:
    return httpx.post(page.current_url.split("?")[0] + "search", json={"text": text, "k": k}).json()[
        "results"
    ]


def clipboard(page) -> str:
    """The clipboard's text once a copy has said it is done."""
    wait_for(
        page, lambda d: d.find_element(By.CSS_SELECTOR, "#status.done").text.startswith("Copied the ABC of")
    )
    return page.execute_async_script("navigator.clipboard.readText().then(arguments[0])")


def test_search_lists_a_line_per_tune_and_unfolds_one_on_a_click(page):
    page.find_element(By.ID, "search-text").send_keys("a lively jig in D major", Keys.ENTER)
    lines = wait_for_results(page, "Tunes matching “a lively jig in D major”")
    assert len(lines) == 20  # a page
    expected = api_search(page, "a lively jig in D major", 40)
    assert [line.get_attribute("data-id") for line in lines] == [h["id"] for h in expected[:20]]
    first = lines[0]
    facts = " · ".join(expected[0][f] for f in ("key", "meter", "rhythm", "origin") if expected[0][f])
    assert (
        title(first) == expected[0]["title"] and first.find_element(By.CSS_SELECTOR, ".facts").text == facts
    )
    assert not page.find_elements(By.CSS_SELECTOR, "#result-list svg")  # scores are drawn on demand
    assert not first.find_element(By.CSS_SELECTOR, ".similarity").is_displayed()
    assert not page.find_element(By.ID, "chance-note").is_displayed()
    page.find_element(By.ID, "show-scores").click()
    z = f" · z {expected[0]['z']:.1f}" if "z" in expected[0] else ""  # match strength, where calibrated
    assert first.find_element(By.CSS_SELECTOR, ".similarity").text == f"cosine {expected[0]['score']:.3f}{z}"

    detail = unfold(first)
    assert "File" in detail.find_element(By.CSS_SELECTOR, ".meta").text
    shoot(page, "search")
    first.find_element(By.CSS_SELECTOR, ".line").click()
    assert not detail.is_displayed()

    page.find_element(By.ID, "load-more").click()
    lines = wait_for(page, lambda d: len(results(d)) == 40 and results(d))
    assert [line.get_attribute("data-id") for line in lines] == [h["id"] for h in expected]
    assert [line.find_element(By.CSS_SELECTOR, ".rank").text for line in lines[19:21]] == ["20", "21"]

    long = next(line for line in lines if unfold_long(line))
    sheet = long.find_element(By.CSS_SELECTOR, ".sheet")
    folded_height = sheet.size["height"]
    long.find_element(By.CSS_SELECTOR, ".unfold").click()  # long scores start folded to their first lines
    assert sheet.size["height"] > folded_height
    play = long.find_element(By.CSS_SELECTOR, ".play")
    play.click()  # offline playback: Web Audio tones from abcjs's note sequence
    assert play.text == "Stop" and play.get_attribute("aria-pressed") == "true"
    play.click()
    assert play.text == "Play"

    chosen = title(long)
    long.find_element(By.CSS_SELECTOR, "button.more").click()
    similar = wait_for_results(page, f"More like “{chosen}”")
    assert similar and chosen not in map(title, similar)  # "more like this" leaves the tune itself out
    assert page.switch_to.active_element.get_attribute("id") == "results-title"
    shoot(page, "more-like-this")


def unfold_long(line) -> bool:
    """Unfold a line; whether its score is long enough to start folded."""
    return unfold(line).find_element(By.CSS_SELECTOR, ".unfold").is_displayed()


def test_the_query_is_in_the_url_for_back_forward_and_bookmarks(page, server):
    page.find_element(By.ID, "search-text").send_keys("a reel", Keys.ENTER)
    lines = wait_for_results(page, "Tunes matching “a reel”")
    assert "?q=a+reel&k=20" in page.current_url
    chosen = title(lines[2])
    unfold(lines[2]).find_element(By.CSS_SELECTOR, "button.more").click()
    wait_for_results(page, f"More like “{chosen}”")
    assert "like=" in page.current_url

    page.back()
    wait_for_results(page, "Tunes matching “a reel”")
    assert page.find_element(By.ID, "search-text").get_attribute("value") == "a reel"
    page.back()
    wait_for(page, lambda d: not d.find_element(By.ID, "results").is_displayed())
    assert page.find_element(By.ID, "search-text").get_attribute("value") == ""
    page.forward()
    wait_for_results(page, "Tunes matching “a reel”")

    page.get(f"{server}/?q=a+slow+air&filter=origin+%3D+Irland&k=5")  # a bookmark
    lines = wait_for_results(page, "Tunes matching “a slow air”")
    assert len(lines) == 5 and all(
        "Irland" in text_of(line.find_element(By.CSS_SELECTOR, ".facts")) for line in lines
    )
    assert page.find_element(By.NAME, "filter").get_attribute("value") == "origin = Irland"


def test_example_queries_are_the_models_own_prompts(page):
    sets = httpx.get(page.current_url + "label-sets").json()
    expected = [
        s["template"].replace("{}", s["labels"][i % len(s["labels"])]) for i, s in enumerate(sets.values())
    ]
    chips = page.find_elements(By.CSS_SELECTOR, "#examples button.example")
    assert [chip.text for chip in chips] == expected
    chips[0].click()
    wait_for_results(page, f"Tunes matching “{expected[0]}”")


def test_copy_and_download_a_tunes_abc(page, tmp_path):
    origin = page.current_url.rstrip("/")
    page.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    page.find_element(By.ID, "search-text").send_keys("a hornpipe", Keys.ENTER)
    line = wait_for_results(page, "Tunes matching “a hornpipe”")[0]
    abc = httpx.get(f"{origin}/items/{line.get_attribute('data-id')}").json()["abc"]
    detail = unfold(line)
    detail.find_element(By.CSS_SELECTOR, "button.copy").click()
    assert clipboard(page) == abc
    detail.find_element(By.CSS_SELECTOR, "button.download").click()
    saved = wait_for(page, lambda d: [f for f in tmp_path.glob("*.abc")])
    assert saved[0].read_text() == abc and saved[0].stem


def test_similar_music_from_an_upload_shows_the_abc_the_model_read(page, corpus):
    jigs = corpus.abc_dir / JIGS
    page.find_element(By.ID, "tab-similar").click()
    form = page.find_element(By.ID, "similar-form")
    form.find_element(By.NAME, "file").send_keys(str(jigs))
    box = form.find_element(By.NAME, "abc")
    wait_for(page, lambda d: box.get_attribute("value") == jigs.read_text())
    assert "holds 10 tunes" in form.find_element(By.CSS_SELECTOR, ".file-note").text
    form.find_element(By.CSS_SELECTOR, "button.copy").click()  # the converted ABC, to take elsewhere
    assert clipboard(page) == jigs.read_text()
    tune = form.find_element(By.NAME, "tune")
    tune.clear()
    tune.send_keys("2")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    lines = wait_for_results(page, f"Music like {JIGS} (tune 2)")
    third_tune = split_tunes(jigs.read_text())[2]
    assert len(lines) == 20 and third_tune.meta["title"] not in map(title, lines)  # not the upload itself
    assert text_of(lines[0].find_element(By.CSS_SELECTOR, ".similarity")).startswith("cosine ")
    assert page.find_elements(By.CSS_SELECTOR, "#similar-query .sheet svg path")  # the query tune, drawn
    uploaded = list(map(title, lines))
    shoot(page, "similar-upload")

    tune.clear()
    tune.send_keys("99")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = status_error(page)
    assert error.startswith(f"Finding music like {JIGS} (tune 99) failed:") and "holds 10 tune(s)" in error
    assert not page.find_element(By.ID, "results").is_displayed()  # no stale heading above the error
    assert not page.find_element(By.ID, "similar-query").is_displayed()

    box.clear()
    box.send_keys(third_tune.abc)  # pasted: the same tune, the same answer
    tune.clear()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    lines = wait_for_results(page, "Music like the tune given")
    assert list(map(title, lines)) == uploaded


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


def test_zero_shot_of_an_uploaded_musicxml_score(page):
    chorale = corpus_path("bach/bwv1.6.mxl")
    page.find_element(By.ID, "tab-classify").click()
    form = page.find_element(By.ID, "classify-form")
    form.find_element(By.NAME, "file").send_keys(str(chorale))
    box = form.find_element(By.NAME, "abc")
    wait_for(page, lambda d: box.get_attribute("value").startswith("X:"))  # converted: what the model reads
    assert "\nK:" in box.get_attribute("value")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#label-bars .bar"))
    assert page.find_elements(By.CSS_SELECTOR, "#classify-score svg path")

    tune = form.find_element(By.NAME, "tune")
    tune.clear()
    tune.send_keys("5")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert "holds 1 tune(s)" in status_error(page)
    assert not page.find_element(By.ID, "classify-output").is_displayed()  # no stale labels under an error


def test_a_result_opens_in_zero_shot_and_api_errors_read_plainly(page):
    page.find_element(By.ID, "search-text").send_keys("a slow air", Keys.ENTER)
    lines = wait_for_results(page, "Tunes matching")
    unfold(lines[0]).find_element(By.CSS_SELECTOR, "button.labels").click()
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#label-bars .bar"))
    assert page.find_element(By.ID, "classify-abc").get_attribute("value").startswith("X:")
    assert not page.find_element(By.ID, "results").is_displayed()

    page.find_element(By.ID, "tab-search").click()
    assert page.find_element(By.ID, "results").is_displayed()
    page.find_element(By.CSS_SELECTOR, "#search-form summary").click()
    page.find_element(By.NAME, "filter").send_keys("origin is Irland")
    page.find_element(By.ID, "search-text").send_keys(Keys.ENTER)
    error = status_error(page)
    assert error.startswith("Search failed:") and "bad filter" in error
    assert not page.find_element(By.ID, "results").is_displayed()  # the old heading is not left above it
    shoot(page, "error")


# Adds what hybrid search answers (each hit's `found_by` and `z`, the chance flag) to /search answers.
HYBRID_FIELDS = """
const realFetch = window.fetch;
window.fetch = async (url, init) => {
  const response = await realFetch(url, init);
  if (!String(url).endsWith("search")) return response;
  const answer = await response.json();
  answer.results.forEach((hit, i) => {
    Object.assign(hit, { found_by: i ? ["vector"] : ["keyword", "vector"], z: 0.4 });
  });
  answer.no_better_than_chance = true;
  return new Response(JSON.stringify(answer), { headers: { "content-type": "application/json" } });
};
"""


def test_hybrid_fields_show_who_found_a_tune_and_a_match_no_better_than_chance(page):
    page.execute_script(HYBRID_FIELDS)
    page.find_element(By.ID, "search-text").send_keys("asdfghjkl qwerty", Keys.ENTER)
    lines = wait_for_results(page, "Tunes matching")
    assert page.find_element(By.ID, "chance-note").is_displayed()
    assert [line.find_element(By.CSS_SELECTOR, ".found-by").text for line in lines[:2]] == [
        "by keyword + vector",
        "by vector",
    ]
    assert text_of(lines[0].find_element(By.CSS_SELECTOR, ".similarity")).endswith("· z 0.4")


def test_facet_dropdowns_narrow_the_search_or_hide_when_the_server_has_none(browser, corpus):
    index = Index.open(corpus.index_dir)
    with_facets, without_facets = create_app(index), create_app(index)
    without_facets.router.routes = [r for r in without_facets.router.routes if r.path != "/v1/facets"]
    with local_serving(without_facets) as client:
        browser.get(f"{client.base_url}/")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button"))
        assert not browser.find_element(By.ID, "facets").is_displayed()
    with local_serving(with_facets) as client:
        url = str(client.base_url)
        browser.get(f"{url}/")
        key = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#facets select[data-field=key]"))
        counts = client.get("/v1/facets", params={"fields": "key"}).json()["facets"]["key"]
        top = counts[0]
        assert key.find_elements(By.TAG_NAME, "option")[1].text == f"{top['value']} ({top['count']})"
        browser.find_element(By.ID, "search-text").send_keys("a jig", Keys.ENTER)
        wait_for_results(browser, "Tunes matching “a jig”")
        Select(key).select_by_value(top["value"])
        wait_for(browser, lambda d: parse_qs(urlparse(d.current_url).query).get("key") == [top["value"]])
        wanted = client.post("/search", json={"text": "a jig", "k": 20, "filter": f'key = "{top["value"]}"'})
        lines = wait_for(
            browser,
            lambda d: (
                [x.get_attribute("data-id") for x in results(d)]
                == [h["id"] for h in wanted.json()["results"]]
            ),
        )
        assert lines
        shoot(browser, "facets")
        browser.back()
        wait_for(browser, lambda d: Select(key).first_selected_option.get_attribute("value") == "")


def test_the_api_docs_work_offline(browser, server):
    browser.get(f"{server}/docs")
    paths = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    assert {"/search", "/similar", "/convert"} <= {text_of(p) for p in paths}
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map((r) => r.name)")
    assert loaded and all(name.startswith(server) for name in loaded)  # nothing from a CDN
    assert httpx.get(f"{server}/redoc").status_code == 404  # FastAPI's ReDoc page would load a CDN


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
    lines = wait_for_results(page, "Tunes matching “a reel”")
    lines[0].find_element(By.CSS_SELECTOR, ".line").send_keys(Keys.ENTER)  # a line unfolds from the keyboard
    wait_for(page, lambda d: lines[0].find_elements(By.CSS_SELECTOR, ".sheet svg"))
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
        assert len(wait_for_results(browser, "Tunes matching “a reel”")) == 20
        browser.find_element(By.ID, "search-text").clear()
        browser.find_element(By.ID, "search-text").send_keys("an air", Keys.ENTER)
        assert len(wait_for_results(browser, "Tunes matching “an air”")) == 20  # the key is kept: no prompt
