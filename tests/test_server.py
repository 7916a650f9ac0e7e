"""`tl-keras serve`: TF Serving's REST API over real HTTP on 127.0.0.1, on a model trained on the real
ants/bees photos; request parsing and batching on their own."""

import asyncio
import base64
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import HYMENOPTERA, asset, free_ports


def _photos(split="val", n=4):
    paths = []
    for cls in ("ants", "bees"):
        folder = os.path.join(asset(HYMENOPTERA), split, cls)
        paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".jpg")][:n // 2]
    return paths


def _call(url, payload=None, raw=None, timeout=60):
    """(status, JSON body) of one request; error statuses too."""
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _b64(path):
    with open(path, "rb") as f:
        return {"b64": base64.b64encode(f.read()).decode()}


def _start_server(hymenoptera_result, tmp_path_factory):
    """`tl-keras serve` in its own process on a copy of the trained export (version 1)."""
    base = tmp_path_factory.mktemp("served") / "hymenoptera"
    shutil.copytree(hymenoptera_result.export_dir, base / "1")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tl_keras.cli", "serve", str(base), "--port", str(port), "--poll-seconds", "0.2",
         "--max-batch-size", "8", "--batch-timeout-ms", "1000", "--max-request-bytes", "2000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    line = proc.stdout.readline()  # printed once the version is loaded and the port is open
    if not line.startswith("serving "):
        proc.kill()
        pytest.fail(f"the server did not start: {line}{proc.stderr.read()[-3000:]}")
    return proc, f"http://127.0.0.1:{port}", base


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(hymenoptera_result, tmp_path_factory):
    """A server the read-only tests below share, in any order: none of them changes its versions or stops it."""
    started = _start_server(hymenoptera_result, tmp_path_factory)
    yield started
    _stop(started[0])


@pytest.fixture
def own_server(hymenoptera_result, tmp_path_factory):
    """A server of one test's own, which it may give new versions and stop."""
    started = _start_server(hymenoptera_result, tmp_path_factory)
    yield started
    _stop(started[0])


def test_tf_serving_rest_api_over_http(server, hymenoptera_result):
    import tensorflow as tf

    proc, root, base = server
    model = f"{root}/v1/models/hymenoptera"
    assert _call(model) == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, meta = _call(f"{model}/versions/1/metadata")
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and meta["model_spec"] == {"name": "hymenoptera", "signature_name": "", "version": "1"}
    assert signatures["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    images_dims = signatures["serving_default"]["inputs"]["images"]["tensor_shape"]["dim"]
    assert [d["size"] for d in images_dims] == ["-1", "-1", "-1", "3"]
    assert set(signatures["serving_default"]["outputs"]) == {"probabilities", "label"}

    # Row format with base64 photos: the probabilities the export gives in this process.
    photos = _photos(n=4)
    loaded = tf.saved_model.load(hymenoptera_result.export_dir)
    contents = [open(p, "rb").read() for p in photos]
    expected = loaded.signatures["serving_bytes"](image_bytes=tf.constant(contents))["probabilities"].numpy()
    status, answer = _call(f"{model}:predict", {"signature_name": "serving_bytes",
                                                "instances": [{"image_bytes": _b64(p)} for p in photos]})
    assert status == 200 and len(answer["predictions"]) == 4
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], expected, atol=1e-5)
    assert [p["label"] for p in answer["predictions"]] == [["ants", "bees"][i] for i in expected.argmax(1)]
    # Columnar format, uint8 arrays, an explicit version: {"outputs": {name: value}}.
    pixels = hymenoptera_result.data.val.images[:3]
    expected = loaded.signatures["serving_uint8"](images=tf.constant(pixels))["probabilities"].numpy()
    status, answer = _call(f"{model}/versions/1:predict", {"signature_name": "serving_uint8", "inputs": pixels.tolist()})
    assert status == 200 and set(answer["outputs"]) == {"probabilities", "label"}
    np.testing.assert_allclose(answer["outputs"]["probabilities"], expected, atol=1e-5)

    # Bad requests: TF Serving's {"error": ...} with 400 (404 for what does not exist), never a crash.
    text_b64 = {"b64": base64.b64encode(b"hello, not an image").decode()}
    bad = [
        (f"{model}:predict", None, b"{not json", 400, "not JSON"),
        (f"{model}:predict", {"instances": [[1]], "inputs": [[1]]}, None, 400, "exactly one of"),
        (f"{model}:predict", {"signature_name": "nope", "instances": [1]}, None, 400, "not found in signature def"),
        (f"{model}:predict", {"instances": [{"pixels": [1]}]}, None, 400, "must name the inputs ['images']"),
        (f"{model}:predict", {"instances": [[1, 2, 3]]}, None, 400, "expected shape"),
        (f"{model}:predict", {"signature_name": "serving_uint8", "instances": [[[[300, 0, 0]]]]}, None, 400, "uint8"),
        (f"{model}:predict", {"signature_name": "serving_bytes", "instances": [{"image_bytes": text_b64}]}, None, 400,
         "is not a JPEG, PNG, GIF, BMP or WebP image"),
        (f"{model}:predict", {"signature_name": "serving_bytes", "instances": [{"image_bytes": {"b64": "@@@"}}]}, None, 400,
         "not valid base64"),
        (f"{model}:predict", None, b"x" * 2_500_000, 413, "larger than 2000000 bytes"),
        (f"{model}/versions/7:predict", {"instances": [1]}, None, 404, "Specific(hymenoptera, 7)"),
        (f"{root}/v1/models/wasps:predict", {"instances": [1]}, None, 404, "Latest(wasps)"),
        (f"{model}:classify", {"instances": [1]}, None, 400, "use :predict"),
    ]
    for url, payload, raw, code, message in bad:
        status, answer = _call(url, payload, raw=raw)
        assert status == code and set(answer) == {"error"} and message in answer["error"], (url, payload, status, answer)
    assert proc.poll() is None

    # A page for people: drop an image, see the top classes.
    with urllib.request.urlopen(root + "/", timeout=10) as response:
        page = response.read().decode()
    assert response.status == 200 and '"hymenoptera"' in page and "serving_bytes" in page
    assert _call(root + "/labels.json") == (200, {"model": "hymenoptera", "version": 1, "class_names": ["ants", "bees"]})


def test_a_person_drops_a_photo_on_the_page_and_sees_the_top_classes(server, browser):
    """The page at / in a real headless Chromium: a photo picked in its file field is sent to the
    server and the classes appear, best first; a file that is no image shows the server's error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, root, _ = server
    driver = browser
    driver.get(root + "/")
    assert driver.find_element(By.ID, "name").text == "hymenoptera"
    photo = _photos(n=2)[1]  # a bee
    driver.find_element(By.ID, "file").send_keys(photo)
    rows = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.result"))
    shown = [(r.find_elements(By.TAG_NAME, "td")[0].text, float(r.find_elements(By.TAG_NAME, "td")[1].text)) for r in rows]
    status, answer = _call(f"{root}/v1/models/hymenoptera:predict",
                           {"signature_name": "serving_bytes", "instances": [{"image_bytes": _b64(photo)}]})
    probabilities = answer["predictions"][0]["probabilities"]
    expected = sorted(zip(["ants", "bees"], probabilities), key=lambda x: -x[1])
    assert [name for name, _ in shown] == [name for name, _ in expected]
    assert all(abs(p - q) < 1e-3 for (_, p), (_, q) in zip(shown, expected))
    assert driver.find_element(By.ID, "version").text == "version 1"  # the shared server keeps version 1 only
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(__file__))  # a Python file, not an image
    error = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "error").text)
    assert "is not a JPEG, PNG, GIF, BMP or WebP image" in error and not driver.find_elements(By.CSS_SELECTOR, "tr.result")


def test_concurrent_valid_and_invalid_requests_then_a_new_version_then_a_graceful_stop(own_server):
    proc, root, base = own_server
    model = f"{root}/v1/models/hymenoptera"
    photos = _photos(n=8)
    valid = [{"signature_name": "serving_bytes", "instances": [{"image_bytes": _b64(p)}]} for p in photos]
    invalid = {"signature_name": "serving_bytes", "instances": [{"image_bytes": {"b64": base64.b64encode(b"GIF89a?").decode()}}]}
    single = [_call(f"{model}:predict", v)[1]["predictions"][0]["probabilities"] for v in valid[:2]]
    # 8 photos and 2 broken payloads at once: merged into batches, a broken payload fails alone.
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda p: _call(f"{model}:predict", p), valid + [invalid, invalid]))
    assert all(status == 200 for status, _ in answers[:8]), answers
    assert all(status == 400 and "error" in a for status, a in answers[8:]), answers[8:]
    np.testing.assert_allclose([a["predictions"][0]["probabilities"] for _, a in answers[:2]], single, atol=1e-5)

    # A new version appears (as an export writes it: complete, then renamed into place): served without a restart.
    shutil.copytree(base / "1", base / ".tmp-new")
    os.rename(base / ".tmp-new", base / "2")
    deadline = time.time() + 60
    while time.time() < deadline and _call(model)[1]["model_version_status"][0]["version"] != "2":
        time.sleep(0.2)
    assert _call(model)[1]["model_version_status"] == [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    assert _call(f"{model}/versions/2:predict", valid[0])[0] == 200
    assert _call(f"{model}/versions/1:predict", valid[0])[0] == 404  # the newest version only, as TF Serving keeps

    # SIGTERM while a request waits in the batcher: it is answered, then the server exits cleanly.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_call, f"{model}:predict", valid[0])
        time.sleep(0.4)  # the request is in (it waits up to 1 s for company)
        proc.send_signal(signal.SIGTERM)
        assert pending.result()[0] == 200
    assert proc.wait(timeout=60) == 0 and "stopped" in proc.stdout.read()


class _Recorder:
    """A stand-in signature function that records the batch sizes it is called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        import tensorflow as tf

        self.calls.append(int(x.shape[0]))
        tf.debugging.assert_non_negative(x, message="negative input")
        return {"y": x * 2}


def _signature(recorder):
    import tensorflow as tf

    from tl_keras.serving.rest import Signature

    return Signature(recorder, {"x": tf.TensorSpec([None, 2], tf.float32)}, {"y": tf.TensorSpec([None, 2], tf.float32)})


def test_the_batcher_merges_concurrent_requests_and_isolates_a_bad_one():
    from tl_keras.serving.rest import Batcher, RequestError

    async def scenario(max_batch_size, rows):
        recorder = _Recorder()
        signature = _signature(recorder)
        with concurrent.futures.ThreadPoolExecutor(2) as executor:
            batcher = Batcher(max_batch_size, 200, executor)
            results = await asyncio.gather(*[batcher.run(signature, ("x",), {"x": np.full((1, 2), r, np.float32)})
                                             for r in rows], return_exceptions=True)
        return recorder.calls, results

    calls, results = asyncio.run(scenario(4, [1, 2, 3, 4, 5, 6]))
    assert calls == [4, 2]  # a full batch at once, the rest after the wait
    assert [float(r["y"][0, 0]) for r in results] == [2, 4, 6, 8, 10, 12]  # each request gets its own rows
    calls, results = asyncio.run(scenario(1, [1, 2, 3]))
    assert calls == [1, 1, 1]  # batching off
    calls, results = asyncio.run(scenario(8, [1, -1, 3]))
    assert calls == [3, 1, 1, 1]  # the merged batch failed on -1: each request alone
    assert isinstance(results[1], RequestError) and "negative input" in str(results[1])
    assert float(results[0]["y"][0, 0]) == 2 and float(results[2]["y"][0, 0]) == 6


def test_request_formats_follow_tf_serving():
    import tensorflow as tf

    from tl_keras.serving.rest import RequestError, format_predict, parse_predict

    signatures = {"serving_default": _signature(_Recorder()),
                  "serving_bytes": type(_signature(_Recorder()))(None, {"image_bytes": tf.TensorSpec([None], tf.string)}, {})}
    name, inputs, rows = parse_predict(b'{"instances": [[1, 2], [3, 4]]}', signatures)
    assert name == "serving_default" and rows and inputs["x"].tolist() == [[1, 2], [3, 4]]
    _, inputs, rows = parse_predict(b'{"inputs": {"x": [[1, 2]]}}', signatures)
    assert not rows and inputs["x"].dtype == np.float32
    _, inputs, _ = parse_predict(json.dumps({"signature_name": "serving_bytes", "instances": [{"b64": "aGk="}, "text"]}).encode(), signatures)
    assert inputs["image_bytes"].tolist() == [b"hi", b"text"]  # an unnamed b64 instance is the single input's value
    outputs = {"probabilities": np.array([[0.25, 0.75]], np.float32), "label": np.array([b"bees"], object)}
    assert format_predict(outputs, rows=True) == {"predictions": [{"probabilities": [0.25, 0.75], "label": "bees"}]}
    assert format_predict({"p": outputs["probabilities"]}, rows=True) == {"predictions": [[0.25, 0.75]]}
    assert format_predict(outputs, rows=False) == {"outputs": {"probabilities": [[0.25, 0.75]], "label": ["bees"]}}
    for body, message in [(b"[]", "JSON object"), (b'{"instances": []}', "non-empty"),
                          (b'{"instances": [{"x": [1, 2]}, {}]}', "instances[1] must name the inputs"),
                          (b'{"instances": [["a", "b"]]}', "cannot be read as float32")]:
        with pytest.raises(RequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_predict(body, signatures)


def test_serve_names_a_wrong_folder(tmp_path, capsys):
    from tl_keras.cli.commands import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "(not a folder)" in capsys.readouterr().err
    (tmp_path / "model" / "1").mkdir(parents=True)
    (tmp_path / "model" / "1" / "saved_model.pb").write_bytes(b"")
    assert main(["serve", str(tmp_path / "model" / "1")]) == 2
    assert "is one version of a model: serve its parent folder" in capsys.readouterr().err


def test_a_broken_version_is_reported_and_tried_again_once_its_files_change(hymenoptera_result, tmp_path):
    from tl_keras.serving.rest import ModelVersions

    version = tmp_path / "model" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"half copied")
    versions = ModelVersions(str(tmp_path / "model"))
    assert versions.refresh() == [] and versions.refresh() == []  # failed, and not retried while unchanged
    (status,) = versions.status(None)["model_version_status"]
    assert status["state"] == "END" and "saved_model.pb" in status["status"]["error_message"]
    shutil.rmtree(version)
    shutil.copytree(hymenoptera_result.export_dir, version)  # the copy completes
    assert versions.refresh() == [1]
    assert versions.status(None)["model_version_status"][0]["state"] == "AVAILABLE"
