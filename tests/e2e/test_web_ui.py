"""The web UI in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven by Selenium) against
the whole stack started as real processes with the GCompris demo catalogue: upload a painting, see the
predicted style and result cards with loaded thumbnails, click a result to search from it, move a slider;
browse the catalogue's clusters in the Explore view and search from one of their artworks. A slider moved
after an upload re-ranks by the picture's `picture_id` (no upload, no encode: the gateway's metrics say so),
page 2 follows the answer's cursor, and a picture the gateway no longer keeps (its picture cache holds one
picture here) is uploaded again without the user noticing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from stack_support import catalogue_stack

from artsearch_tools.catalogue.folder import Catalogue, CatalogueEntry, load_catalogue

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
QUERY_PAINTING = "hokusai-the-great-wave-off-kanagawa"
WAIT_S = 90
ASPECTS = ("content", "style", "colour")


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = (
        "Debian chromium and chromium-driver are not installed: run scripts/install_browser.sh (make browser)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI installs them through `make test`: missing there is a failure
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium, driver_path = _browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=driver_path, log_output=str(tmp_path_factory.mktemp("chromedriver") / "log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT_S)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return load_catalogue(gcompris_catalogue)


@pytest.fixture(scope="module")
def gateway_url(
    model_path: Path, catalogue: Catalogue, repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    # The evaluation's pictures, for the Explore view's quality panel; a picture cache of one picture, so
    # that a second picture sent evicts the first (the web UI's fallback when its picture_id expired).
    env = {"EVALUATION_DIR": str(repo_root / "docs" / "img"), "QUERY_CACHE_ENTRIES": "1"}
    with catalogue_stack(model_path, catalogue, tmp_path_factory.mktemp("stack"), env) as running:
        yield running.settings.gateway_url


def _entry(catalogue: Catalogue, artwork_id: str) -> CatalogueEntry:
    return next(e for e in catalogue.entries if e.id == artwork_id)


def _wait(
    browser: WebDriver, condition: Callable[[WebDriver], object], message: str, timeout: float = WAIT_S
) -> object:
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda d: condition(d) or None)
    except TimeoutException:
        error = browser.find_element(By.ID, "error").text
        status = browser.find_element(By.ID, "status").text
        raise AssertionError(f"{message} (status: {status!r}, error shown: {error!r})") from None


def _answered(browser: WebDriver) -> str:
    """The request URL of the answer the result grid shows."""
    return browser.find_element(By.ID, "results").get_attribute("data-answered") or ""


def _cards(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#results .card")


def _card_ids(browser: WebDriver) -> list[str]:
    return [card.get_attribute("data-id") for card in _cards(browser)]


def _thumbnails_loaded(browser: WebDriver, count: int) -> bool:
    return bool(
        browser.execute_script(
            "const imgs = [...document.querySelectorAll('#results .card img')].slice(0, arguments[0]);"
            "return imgs.length === arguments[0] && imgs.every(i => i.complete && i.naturalWidth > 0);",
            count,
        )
    )


def _severe_console_messages(browser: WebDriver) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def searched(browser: WebDriver, gateway_url: str, catalogue: Catalogue) -> WebDriver:
    """The page after uploading the query painting through the file input."""
    browser.get(gateway_url + "/")
    assert browser.title.startswith("artsearch")
    upload = browser.find_element(By.CSS_SELECTOR, "input[type=file]")
    upload.send_keys(str((catalogue.root / _entry(catalogue, QUERY_PAINTING).filename).resolve()))
    _wait(browser, lambda d: "/v1/search" in _answered(d) and _cards(d), "no result cards after the upload")
    return browser


def test_an_uploaded_painting_shows_its_style_and_results_with_thumbnails(searched, catalogue):
    browser = searched
    entry = _entry(catalogue, QUERY_PAINTING)
    cards = _cards(browser)
    assert len(cards) == int(browser.find_element(By.ID, "k").get_attribute("value"))
    # The painting itself comes first.
    assert cards[0].get_attribute("data-id") == entry.id
    assert cards[0].find_element(By.CSS_SELECTOR, ".card-title").text == entry.title
    assert cards[0].find_element(By.CSS_SELECTOR, ".card-artist").text == entry.artist
    visible = min(4, len(cards))
    _wait(browser, lambda d: _thumbnails_loaded(d, visible), "the first thumbnails did not load")
    for card in cards[:visible]:
        image = card.find_element(By.CSS_SELECTOR, "img")
        assert image.get_attribute("alt"), "every thumbnail has alt text"
        assert "/thumbnail" in image.get_attribute("src")
        assert card.find_element(By.CSS_SELECTOR, ".score").text
        assert "Visual" in card.find_element(By.CSS_SELECTOR, ".aspects").text
        assert "Influence" in card.find_element(By.CSS_SELECTOR, ".card-path").text
    # Predicted style with its confidence and the top 3.
    assert browser.find_element(By.ID, "style-prediction").is_displayed()
    label = browser.find_element(By.ID, "style-label").text
    top = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#style-top li")]
    assert label and label != "unknown", label
    assert "confidence" in browser.find_element(By.ID, "style-confidence").text
    assert 1 <= len(top) <= 3 and top[0].startswith(label)
    assert any(item.startswith(entry.style) for item in top), (entry.style, top)
    assert entry.artist.split()[-1] in browser.find_element(By.ID, "source-artist-info").text
    assert not browser.find_element(By.ID, "degraded").is_displayed()
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert _severe_console_messages(browser) == []


def test_clicking_a_result_searches_from_it(searched):
    browser = searched
    before = _card_ids(browser)
    chosen = _cards(browser)[1]
    chosen_id = chosen.get_attribute("data-id")
    chosen_title = chosen.find_element(By.CSS_SELECTOR, ".card-title").text
    chosen.find_element(By.CSS_SELECTOR, ".card-open").click()
    _wait(
        browser,
        lambda d: f"/v1/artworks/{chosen_id}/similar" in _answered(d) and _cards(d),
        "no results after clicking a result",
    )
    after = _card_ids(browser)
    assert chosen_id not in after, "the artwork searched from is left out of its own results"
    assert after != before
    assert chosen_title in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "query-preview").is_displayed()
    _wait(browser, lambda d: _thumbnails_loaded(d, min(4, len(after))), "thumbnails did not load")
    assert _severe_console_messages(browser) == []


def test_moving_a_slider_reruns_the_query_with_the_new_weight(searched):
    browser = searched
    slider = browser.find_element(By.ID, "w-style")
    start = float(slider.get_attribute("value"))
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # the keyboard works the sliders
    moved = float(slider.get_attribute("value"))
    assert moved == pytest.approx(start + 0.15)
    assert browser.find_element(By.ID, "w-style-value").text == f"{moved:.2f}"
    expected = f"w_style={moved:g}"
    _wait(browser, lambda d: expected in _answered(d), f"no answer to a request with {expected}")
    # The answer reports the weights it used: the sliders' aspect weights, normalised to sum to 1.
    aspects = {
        name: float(browser.find_element(By.ID, f"w-{name}").get_attribute("value")) for name in ASPECTS
    }
    used = moved / sum(aspects.values())
    weights = browser.find_element(By.ID, "weights-used").text
    assert f"style {used:.2f}" in weights, (aspects, weights)
    assert _cards(browser)


def _shown_error(browser: WebDriver, previous: str = "") -> str:
    _wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error").text != previous
        ),
        "no error shown",
    )
    return browser.find_element(By.ID, "error").text


def test_bad_input_shows_the_apis_error_message(searched, tmp_path):
    browser = searched
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"this is not an image at all")
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(not_an_image))
    message = _shown_error(browser)
    assert message and "internal" not in message.lower(), message
    # The console check of the other tests sees failed requests: this one logged its 4xx.
    assert any("status of 4" in line for line in _severe_console_messages(browser))
    # An image URL goes through the API's URL fetch, which refuses loopback addresses, and says so.
    url = browser.find_element(By.ID, "url")
    url.send_keys("http://127.0.0.1:9/painting.jpg", Keys.ENTER)
    refused = _shown_error(browser, previous=message)
    assert "127.0.0.1" in refused or "loopback" in refused.lower() or "not allowed" in refused.lower(), (
        refused
    )


def _images_loaded(browser: WebDriver, selector: str, count: int) -> bool:
    return bool(
        browser.execute_script(
            "const imgs = [...document.querySelectorAll(arguments[0])].slice(0, arguments[1]);"
            "return imgs.length === arguments[1] && imgs.every(i => i.complete && i.naturalWidth > 0);",
            selector,
            count,
        )
    )


def test_explore_shows_clusters_their_artworks_and_the_evaluation_pictures(
    browser, gateway_url, catalogue, repo_root
):
    browser.get(gateway_url + "/")
    _severe_console_messages(browser)  # drains what earlier tests left in the log
    tab = browser.find_element(By.ID, "tab-explore")
    assert tab.get_attribute("aria-selected") == "false"
    browser.find_element(By.ID, "tab-search").send_keys(Keys.ARROW_RIGHT)  # the keyboard moves between tabs
    assert tab.get_attribute("aria-selected") == "true"
    assert not browser.find_element(By.ID, "view-search").is_displayed()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#clusters .cluster-card"), "no cluster cards")
    cards = browser.find_elements(By.CSS_SELECTOR, "#clusters .cluster-card")
    assert len(cards) == int(browser.find_element(By.ID, "cluster-count").get_attribute("value"))
    assert f"of {len(catalogue.entries)} artworks" in browser.find_element(By.ID, "clusters-status").text
    assert "purity by style" in browser.find_element(By.ID, "clusters-status").text
    _wait(browser, lambda d: _images_loaded(d, "#clusters .cluster-card:first-child img", 1), "no mosaic")
    first = cards[0]
    title = first.find_element(By.CSS_SELECTOR, ".cluster-title").text
    assert title.startswith("Cluster 1 · ") and "artworks" in title
    assert first.find_element(By.CSS_SELECTOR, ".cluster-styles").text
    assert all(image.get_attribute("alt") for image in first.find_elements(By.CSS_SELECTOR, "img"))
    size = int(title.split("· ")[1].split()[0])
    # The evaluation pictures, with their titles.
    _wait(browser, lambda d: d.find_element(By.ID, "quality").is_displayed(), "no quality panel")
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#pictures figcaption")]
    assert "Precision-recall curves of each descriptor aspect" in captions
    assert len(captions) == len(list((repo_root / "docs" / "img").glob("*.png")))
    _wait(browser, lambda d: _images_loaded(d, "#pictures img", 1), "the first picture did not load")
    # Open the cluster (with the keyboard): its artworks, nearest the centre first.
    first.find_element(By.CSS_SELECTOR, ".cluster-open").send_keys(Keys.ENTER)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#members .member")) == min(size, 24),
          "the cluster's artworks are not listed")  # fmt: skip
    assert browser.find_element(By.ID, "members-heading").text == title
    members = browser.find_elements(By.CSS_SELECTOR, "#members .member")
    _wait(browser, lambda d: _images_loaded(d, "#members .member img", 1), "member thumbnails did not load")
    chosen_id = members[0].get_attribute("data-id")
    chosen_title = members[0].find_element(By.CSS_SELECTOR, ".card-title").text
    members[0].find_element(By.CSS_SELECTOR, ".card-open").click()
    _wait(
        browser,
        lambda d: f"/v1/artworks/{chosen_id}/similar" in _answered(d) and _cards(d),
        "no results after choosing a cluster's artwork",
    )
    assert browser.find_element(By.ID, "view-search").is_displayed()
    assert browser.find_element(By.ID, "tab-search").get_attribute("aria-selected") == "true"
    assert chosen_id not in _card_ids(browser)
    assert chosen_title in browser.find_element(By.ID, "status").text
    assert _severe_console_messages(browser) == []


# --- re-ranking without re-uploading (issue 16) -----------------------------------------------------------

OTHER_PAINTING = "van-gogh-cafe-terrace-at-night"


def _metric(gateway_url: str, name: str, result: str) -> float:
    """A sample of the gateway's /metrics (0 when not counted yet)."""
    text = httpx.get(f"{gateway_url}/metrics", timeout=30, follow_redirects=True).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("result") == result:
                return sample.value
    return 0.0


def _counters(gateway_url: str) -> dict[str, float]:
    return {
        "misses": _metric(gateway_url, "artsearch_gateway_query_cache_total", "miss"),
        "by_id": _metric(gateway_url, "artsearch_gateway_picture_id_searches_total", "hit"),
        "expired": _metric(gateway_url, "artsearch_gateway_picture_id_searches_total", "expired"),
    }


def _results(browser: WebDriver) -> WebElement:
    return browser.find_element(By.ID, "results")


def _upload_in_browser(browser: WebDriver, gateway_url: str, path: Path) -> None:
    browser.get(gateway_url + "/")
    _severe_console_messages(browser)  # drains what earlier tests left in the log
    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(path.resolve()))
    _wait(browser, lambda d: _results(d).get_attribute("data-sent") == "upload" and _cards(d), "no results")


def _favour_colour(browser: WebDriver) -> str:
    """Moves the colour slider to its end (one key: one request); what the request's URL then holds."""
    browser.find_element(By.ID, "w-colour").send_keys(Keys.END)
    return "w_colour=1"


def _uploaded_ranking(gateway_url: str, path: Path, request_url: str) -> list[str]:
    """The ranking the gateway gives when the picture is uploaded with the parameters of `request_url`."""
    query = request_url.split("?", 1)[1]
    with path.open("rb") as picture:
        answer = httpx.post(f"{gateway_url}/v1/search?{query}", files={"image": picture}, timeout=60)
    assert answer.status_code == 200, answer.text
    return [result["id"] for result in answer.json()["results"]]


def test_moving_a_slider_reranks_by_picture_id_without_uploading_again(browser, gateway_url, catalogue):
    path = catalogue.root / _entry(catalogue, QUERY_PAINTING).filename
    _upload_in_browser(browser, gateway_url, path)
    before, counters = _card_ids(browser), _counters(gateway_url)
    uploads = _results(browser).get_attribute("data-uploads")
    expected = _favour_colour(browser)
    _wait(browser, lambda d: expected in _answered(d), f"no answer to a request with {expected}")
    # The request sent the picture's id, not the picture: no upload, no encode (no picture-cache miss).
    assert _results(browser).get_attribute("data-sent") == "picture_id"
    assert _results(browser).get_attribute("data-uploads") == uploads
    after = _counters(gateway_url)
    assert after["misses"] == counters["misses"] and after["by_id"] == counters["by_id"] + 1
    # The ranking is the one the new weights give, as if the picture had been uploaded with them.
    ranking = _card_ids(browser)
    assert ranking != before
    assert ranking == _uploaded_ranking(gateway_url, path, _answered(browser))
    aspects = {
        name: float(browser.find_element(By.ID, f"w-{name}").get_attribute("value")) for name in ASPECTS
    }
    used = aspects["colour"] / sum(aspects.values())
    assert f"colour {used:.2f}" in browser.find_element(By.ID, "weights-used").text
    assert _severe_console_messages(browser) == []


def test_more_results_follow_the_answers_cursor(browser, gateway_url, catalogue):
    path = catalogue.root / _entry(catalogue, QUERY_PAINTING).filename
    _upload_in_browser(browser, gateway_url, path)
    first_page = _card_ids(browser)
    counters = _counters(gateway_url)
    browser.find_element(By.ID, "more").click()
    _wait(browser, lambda d: len(_cards(d)) > len(first_page), "no second page")
    assert _results(browser).get_attribute("data-sent") == "cursor"
    assert "cursor=" in _answered(browser)
    everything = _card_ids(browser)
    assert everything[: len(first_page)] == first_page and len(set(everything)) == len(everything)
    k = len(everything)
    assert everything == _uploaded_ranking(gateway_url, path, f"/v1/search?k={k}&influence_weight=1")
    assert _counters(gateway_url)["misses"] == counters["misses"]  # the upload above hit the cache
    assert _severe_console_messages(browser) == []


def test_an_expired_picture_id_falls_back_to_uploading_the_picture_again(browser, gateway_url, catalogue):
    path = catalogue.root / _entry(catalogue, QUERY_PAINTING).filename
    _upload_in_browser(browser, gateway_url, path)
    uploads = int(_results(browser).get_attribute("data-uploads"))
    # Another picture sent to the gateway evicts this one from its one-picture cache.
    other = catalogue.root / _entry(catalogue, OTHER_PAINTING).filename
    _uploaded_ranking(gateway_url, other, "/v1/search?k=3")
    counters = _counters(gateway_url)
    expected = _favour_colour(browser)
    _wait(browser, lambda d: expected in _answered(d), f"no answer to a request with {expected}")
    # The picture_id was refused (410), and the page sent the file it still holds: one upload more.
    assert _results(browser).get_attribute("data-sent") == "upload"
    assert int(_results(browser).get_attribute("data-uploads")) == uploads + 1
    after = _counters(gateway_url)
    # Two picture-cache misses: the picture_id's lookup, then the picture's own (encoded again).
    assert after["expired"] == counters["expired"] + 1 and after["misses"] == counters["misses"] + 2
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert _card_ids(browser) == _uploaded_ranking(gateway_url, path, _answered(browser))
    assert any("status of 410" in line for line in _severe_console_messages(browser))
