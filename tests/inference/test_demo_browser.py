"""The demo page in a real browser: headless Chromium driven by Playwright against the app on a free port.

Needs the `demo` extra, `playwright` (pip) and a Chromium (`apt-get install chromium`; `make setup` installs all
three). Without them the tests skip with the reason, except in CI (`CI=true`), where they fail.
The model is a tiny MEAMTM with random weights: the page must show what the pipeline returns for the same file.
Time per request goes to the log (`pytest --log-cli-level=INFO`); it is not asserted.

With MEAMTM_WRITE_SCREENSHOT=1 the page with a result is saved to docs/images/demo.png; MEAMTM_DEMO_MODEL names
another checkpoint to show there (e.g. the output of `make run`) and MEAMTM_DEMO_CLIP the clip to classify.
"""

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from meamtm import MeamtmFeatureExtractor, MeamtmForAudioClassification

from ..conftest import FSDD, REPO, tiny_config


pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

CHROMIUM = os.environ.get("MEAMTM_CHROMIUM", "/usr/bin/chromium")
LABELS = {index: f"digit-{index}" for index in range(10)}
LABEL = '#labels [data-testid="label-output-value"]'
TIMEOUT_MS = 120_000


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser tests: `make setup` installs what they need)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Good and bad inputs; the microphone's fake capture plays `microphone.wav` in a loop."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)

    def write(name, waveform, rate=16000):
        sf.write(folder / name, np.asarray(waveform, dtype=np.float32), rate, subtype="PCM_16")
        return folder / name

    paths = {
        "speech": FSDD / "test" / "3" / "theo_3.wav",
        "microphone": write("microphone.wav", 0.3 * np.sin(2 * np.pi * 300 * np.arange(32000) / 16000)),
        "silent": write("silent.wav", np.zeros(8000)),
        "clipped": write("clipped.wav", np.clip(3 * tone, -1, 1)),
        "empty": write("empty.wav", np.zeros(0)),
        "wav_named_ogg": folder / "speech.ogg",  # WAV bytes under another audio extension: FFmpeg reads content
        "not_audio": folder / "notes.wav",
        "not_audio_extension": folder / "notes.txt",
        "long": folder / "five-minutes.flac",
    }
    # The digits 3 1 4 1 5 of the FSDD test split, each at the start of a slot of digital silence as long as the
    # window of the `make run` model (8120 samples at 8 kHz): what the screenshot shows.
    slots = []
    for digit, speaker in zip((3, 1, 4, 1, 5), ("jackson", "george", "theo", "lucas", "yweweler")):
        waveform, _ = sf.read(FSDD / "test" / str(digit) / f"{speaker}_4.wav", dtype="float32")
        slots.append(np.pad(waveform, (0, 8120 - len(waveform))))
    paths["digits"] = write("digits-31415.wav", np.concatenate(slots), rate=8000)
    shutil.copy(paths["speech"], paths["wav_named_ogg"])
    paths["not_audio"].write_text("these are notes, not audio\n")
    paths["not_audio_extension"].write_text("these are notes, not audio\n")
    minutes = rng.standard_normal(16000 * 10) * 0.05 + 0.2 * np.tile(tone, 10)
    with sf.SoundFile(paths["long"], "w", samplerate=16000, channels=1, subtype="PCM_16") as file:
        for _ in range(30):
            file.write(minutes.astype(np.float32))
    return paths


@pytest.fixture(scope="module")
def browser(clips):
    try:
        import gradio  # noqa: F401
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        unavailable(f"{error.name} is not installed: pip install -e .[demo] playwright")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set MEAMTM_CHROMIUM)")
    if not FSDD.is_dir():
        unavailable(f"FSDD not found at {FSDD} (set MEAMTM_FSDD)")
    arguments = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clips['microphone']}",
    ]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=arguments)
        yield chromium
        chromium.close()


def start_app(model: str, examples: str | None = None):
    """Serve the demo for `model` in this process on a free port; returns (url, demo, classifier)."""
    from meamtm.inference.demo import DemoArguments, build_demo, launch
    from meamtm.inference.predict import load_classifier

    arguments = DemoArguments(model=model, examples=examples, host="127.0.0.1", port=free_port(), top_k=3)
    demo = build_demo(arguments)
    launch(demo, arguments, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{arguments.port}/", demo, load_classifier(arguments)


@pytest.fixture(scope="module")
def app(tmp_path_factory, browser):
    """(url, a separate pipeline on the same checkpoint to compare with)."""
    torch.manual_seed(0)
    config = tiny_config(num_labels=10, id2label=LABELS)
    path = tmp_path_factory.mktemp("tiny-classifier")
    MeamtmForAudioClassification(config).save_pretrained(path)
    MeamtmFeatureExtractor.from_model_config(config).save_pretrained(path)
    url, demo, classifier = start_app(str(path), examples=str(FSDD / "test"))
    yield url, classifier
    demo.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#classify").wait_for()
    return page


def upload(page, path):
    """Put a file in the audio input and wait until the server has it."""
    clear(page)
    with page.expect_response(lambda response: "/upload" in response.url and response.request.method == "POST"):
        page.locator("#audio input[type=file]").set_input_files(str(path))
    page.locator("#audio button[aria-label='Clear']").wait_for()


def clear(page):
    button = page.locator("#audio button[aria-label='Clear']")
    if button.count():
        button.click()
        page.locator("#audio input[type=file]").wait_for(state="attached")


def classify(page) -> str:
    """Press Classify and return the top label the page shows (the page clears the previous one first)."""
    page.locator("#classify").click()
    label = page.locator(LABEL)
    label.wait_for(state="detached")
    label.wait_for()
    return label.inner_text().strip()


def toast(page, text: str):
    message = page.locator(".toast-body", has_text=text).first
    message.wait_for()
    return message.inner_text()


def test_upload_shows_the_label_the_pipeline_gives(app, browser, clips):
    from meamtm.inference.demo import audio_stats

    url, classifier = app
    page = open_page(browser, url)
    upload(page, clips["speech"])
    started = time.perf_counter()
    label = classify(page)
    logger.info(f"upload request: {time.perf_counter() - started:.2f} s")
    assert label == classifier(str(clips["speech"]), top_k=3)[0]["label"]
    assert "1 window of up to" in page.locator("#summary").inner_text()
    assert page.locator("#spectrogram img").count() == 1
    assert not page.locator("#timeline").is_visible()
    checkpoint = page.locator("#checkpoint").inner_text()
    assert "16000 Hz" in checkpoint and "digit-0, digit-1" in checkpoint
    # The examples are clips of the evaluation data: one click puts one in the input, and it classifies.
    example = FSDD / "test" / "0" / "george_0.wav"
    page.locator("button.gallery-item", has_text="0/george_0.wav").click()
    page.locator("#audio button[aria-label='Clear']").wait_for()
    assert classify(page) == classifier(str(example), top_k=3)[0]["label"]
    seconds = audio_stats(str(example), 16000).seconds
    assert seconds != audio_stats(str(clips["speech"]), 16000).seconds
    assert page.locator("#summary").inner_text().startswith(f"{seconds:.2f} s of audio")
    page.close()


def test_microphone_recording_through_the_fake_capture_device(app, browser):
    url, _ = app
    page = open_page(browser, url)
    page.get_by_role("button", name="Record audio").click()
    page.locator("#audio button.record-button").click()
    page.wait_for_timeout(1500)
    with page.expect_response(lambda response: "/upload" in response.url and response.request.method == "POST"):
        page.locator("#audio button.stop-button").click()
    page.locator("#audio button[aria-label='Clear']").wait_for()
    assert classify(page) in LABELS.values()
    seconds = float(page.locator("#summary").inner_text().split(" s of audio")[0])
    assert seconds > 1.0  # the page recorded for 1.5 s
    assert page.locator(".toast-body", has_text="silent").count() == 0  # the fake device played the tone
    page.close()


BAD_INPUTS = {
    "not_audio": "Could not decode audio from notes.wav",
    "empty": "empty.wav decodes to 0 samples",
    "not_audio_extension": "Invalid file type: notes.txt",  # refused by the page before upload
    "silent": "The recording is silent",
    "clipped": "The audio is clipped",
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
def test_bad_input_shows_its_message_and_the_next_request_works(app, browser, clips, bad):
    url, classifier = app
    page = open_page(browser, url)
    if bad == "not_audio_extension":
        page.locator("#audio input[type=file]").set_input_files(str(clips[bad]))
    else:
        upload(page, clips[bad])
        page.locator("#classify").click()
    assert BAD_INPUTS[bad] in toast(page, BAD_INPUTS[bad])
    if bad in ("silent", "clipped"):  # warned, and classified all the same
        page.locator(LABEL).wait_for()
        assert page.locator(LABEL).inner_text().strip() == classifier(str(clips[bad]), top_k=3)[0]["label"]
    upload(page, clips["wav_named_ogg"])
    assert classify(page) == classifier(str(clips["speech"]), top_k=3)[0]["label"]
    page.close()


def test_a_long_file_is_classified_window_by_window(app, browser, clips):
    """Five minutes: streamed through FFmpeg by the pipeline (bounded memory), one table row per window."""
    from meamtm.inference.demo import MAX_TABLE_ROWS, segment_rows

    url, classifier = app
    expected = classifier(str(clips["long"]), top_k=3, return_segments=True)
    page = open_page(browser, url)
    upload(page, clips["long"])
    started = time.perf_counter()
    assert classify(page) == expected["labels"][0]["label"]
    logger.info(f"five-minute file: {time.perf_counter() - started:.2f} s")
    assert f"{len(expected['segments'])} windows" in page.locator("#summary").inner_text()
    page.locator("#timeline img").wait_for()
    rows = segment_rows(expected["segments"])
    assert len(rows) == MAX_TABLE_ROWS < len(expected["segments"])  # the table stops; the timeline shows all
    assert page.locator("#segments [role=grid]").get_attribute("aria-rowcount") == str(len(rows) + 1)  # + header
    start, end, label, score = page.locator("#segments [role=row][aria-rowindex='2']").inner_text().split()
    assert [float(start), float(end), label, float(score)] == rows[0]
    page.close()


def test_several_pages_at_once_all_get_their_answers(app, browser, clips):
    url, classifier = app
    files = [clips["speech"], clips["clipped"], clips["microphone"], clips["wav_named_ogg"]]
    pages = [open_page(browser, url) for _ in files]
    for page, path in zip(pages, files):
        upload(page, path)
    started = {}
    for index, page in enumerate(pages):
        page.locator("#classify").click()
        started[index] = time.perf_counter()
    answered = {}
    deadline = time.perf_counter() + TIMEOUT_MS / 1000
    while len(answered) < len(pages) and time.perf_counter() < deadline:
        for index, page in enumerate(pages):
            if index not in answered and page.locator(LABEL).count():
                answered[index] = time.perf_counter() - started[index]
        time.sleep(0.05)
    for index, seconds in sorted(answered.items()):
        logger.info(f"page {index}: answered {seconds:.2f} s after its click")
    assert sorted(answered) == list(range(len(pages)))
    for page, path in zip(pages, files):
        assert page.locator(LABEL).inner_text().strip() == classifier(str(path), top_k=3)[0]["label"]
        page.close()


def test_screenshot_of_the_page_with_a_result(browser, clips, tmp_path):
    """The page as people see it, with a timeline of windows; written to docs/images only on request."""
    model = os.environ.get("MEAMTM_DEMO_MODEL")
    clip = os.environ.get("MEAMTM_DEMO_CLIP", str(clips["digits"]))
    if model is None:
        model = str(tmp_path / "tiny")
        MeamtmForAudioClassification(tiny_config(num_labels=10, id2label=LABELS)).save_pretrained(model)
    url, demo, classifier = start_app(model, examples=str(FSDD / "test"))
    try:
        page = open_page(browser, url)
        upload(page, clip)
        assert classify(page) == classifier(clip, top_k=3)[0]["label"]
        page.locator("#spectrogram img").wait_for()
        page.wait_for_timeout(500)  # let the plots finish laying out
        path = tmp_path / "demo.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("MEAMTM_WRITE_SCREENSHOT") == "1":
            (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, REPO / "docs" / "images" / "demo.png")
        page.close()
    finally:
        demo.close()


@pytest.mark.parametrize("how", ["module", "space"])
def test_the_command_line_and_the_space_app_serve_the_page(app, browser, tmp_path, how):
    """`python -m meamtm.demo --model DIR --port N`, and the file run as a Space runs it: a copy named app.py,
    the model in MEAMTM_MODEL, the port in GRADIO_SERVER_PORT. The page comes up and classifies."""
    url, classifier = app
    model = classifier.model.name_or_path
    port = free_port()
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if how == "module":
        command = [sys.executable, "-m", "meamtm.demo", "--model", model, "--port", str(port), "--share", "false"]
    else:
        shutil.copy(REPO / "meamtm" / "inference" / "demo.py", tmp_path / "app.py")
        command = [sys.executable, "app.py"]
        environment.update(MEAMTM_MODEL=model, GRADIO_SERVER_PORT=str(port))
    process = subprocess.Popen(command, env=environment, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        assert process.poll() is None, process.stdout.read()[-3000:]
        page = open_page(browser, f"http://127.0.0.1:{port}/")
        assert model in page.locator("#checkpoint").inner_text()
        upload(page, FSDD / "test" / "7" / "george_1.wav")
        assert classify(page) == classifier(str(FSDD / "test" / "7" / "george_1.wav"), top_k=3)[0]["label"]
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
