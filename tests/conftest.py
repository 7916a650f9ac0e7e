"""Shared fixtures: the real assets in ../shared/assets, and one small trained model reused by tests."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Test processes (pytest-xdist) share two cores, and tests start worker processes of their own:
# TensorFlow single-threaded in each (inherited by every subprocess, so runs compared across processes
# use the same threads) keeps its thread pools from spinning against each other. Measured on
# test_features.py + test_training.py under -n 3: 233 s -> 195 s.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(os.path.dirname(ROOT), "shared", "assets")
HUB_035 = os.path.join(ASSETS, "hub", "mobilenet_v2_035_224_feature_vector")
KERAS_035 = os.path.join(ASSETS, "weights", "mobilenet_v2_0.35_224_no_top.h5")
HYMENOPTERA = os.path.join(ASSETS, "datasets", "hymenoptera")
FLOWERS = os.path.join(ASSETS, "datasets", "flowers")

# The trivial baseline: always answering the largest class. hymenoptera's val split has 70 ants and
# 83 bees; pooled train + val (as k-fold deals it), 194 ants and 204 bees. Accuracy asserts must beat
# it by MARGIN, so a model that learned nothing fails them.
HYMENOPTERA_MAJORITY = 83 / 153
HYMENOPTERA_POOLED_MAJORITY = 204 / 398
MARGIN = 0.1


def coin_tail(n: int, accuracy: float) -> float:
    """The probability that guessing each of `n` balanced binary labels by a fair coin scores at least
    `accuracy`: an accuracy assert on `n` images with a bound whose tail is tiny cannot pass by chance."""
    from math import ceil, comb

    k = ceil(accuracy * n - 1e-9)
    return sum(comb(n, i) for i in range(k, n + 1)) / 2**n


# The longest units of work, longest first (seconds in a 2-process run on 2 cores): pytest-xdist hands
# units out in collection order, so a long test collected last would run alone at the end while the
# other core idles. The two groups train a shared fixture, then run every test that uses it.
LONGEST_FIRST = (
    "hymenoptera_result", "test_a_cluster_trains_in_step", "test_train_strategy_auto_compare_scratch",
    "test_demo_transfers", "flowers_result", "test_multi_label_side_by_side", "test_the_resnet50_path",
    "test_sigkilled_in_both_phases", "test_mirrored_strategy_over_two", "test_keras_applications_path",
    "test_a_cut_backbone_with_layer_decay", "test_choose_strategy_example", "test_an_export_killed_midway",
    "test_an_exports_config_reruns", "test_train_predict_evaluate", "test_advise_prints",
    "test_a_strong_run_learns", "test_mixed_float16_build", "test_train_folds_reports", "test_a_depth_search_stopped",
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n 2` in setup.cfg, `--dist loadgroup`), the tests sharing a trained
    session fixture run in one worker, so each fixture trains once; the longest work is collected
    first (`LONGEST_FIRST`), the rest in file order."""
    def rank(item) -> int:
        names = [getattr(item, "_tl_group", "")] + [item.name]
        return next((i for i, key in enumerate(LONGEST_FIRST) for name in names if name.startswith(key)), len(LONGEST_FIRST))

    for item in items:
        for fixture in ("hymenoptera_result", "flowers_result"):
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(fixture))
                item._tl_group = fixture
                break
    items.sort(key=rank)  # stable: file order within a rank, a group's tests together


def assert_examples_run(module, at_least: int) -> None:
    """`module`'s docstring examples run (`doctest`): at least `at_least` of them, none failing."""
    import doctest

    result = doctest.testmod(module)
    assert result.attempted >= at_least and result.failed == 0, (module.__name__, result)


def asset(path: str) -> str:
    if not os.path.exists(path):
        pytest.fail(f"Missing real asset {path}: the tests read ../shared/assets beside the project root.")
    return path


def hymenoptera_subset(path, train: int, val: int) -> str:
    """A label file (path,label,split) of the first `train` and `val` ants/bees photos per class of each
    split, written at `path`: for mechanics that need a few batches per epoch, not every photo decoded
    in every process."""
    rows = ["path,label,split"]
    for split, n in (("train", train), ("val", val)):
        for cls in ("ants", "bees"):
            folder = os.path.join(asset(HYMENOPTERA), split, cls)
            rows += [f"{os.path.join(folder, f)},{cls},{split}" for f in sorted(os.listdir(folder)) if f.endswith(".jpg")][:n]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def free_ports(n: int) -> list[int]:
    """`n` free TCP ports on 127.0.0.1 (for worker processes and servers the tests start)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_python(code: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process (fresh TensorFlow state); fails the test on a non-zero exit."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"subprocess failed ({proc.returncode}):\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def hymenoptera_result(tmp_path_factory):
    """tl_keras.train on the real ants/bees photos with the 0.35 Hub backbone, tiny size and budget."""
    import tl_keras

    out = tmp_path_factory.mktemp("exports") / "hymenoptera"
    return tl_keras.train(
        asset(HYMENOPTERA), backbone=asset(HUB_035), image_size=96, head_epochs=3, fine_tune_epochs=2,
        unfreeze_blocks=2, output=str(out), verbose=0,
    )


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory):
    """A small TF Hub format module (three conv blocks `block_1`..`block_3`, random weights, 64
    features), for tests of mechanics that pretrained features do not change: resuming, restarting a
    cluster, seeding. It loads and traces in a fraction of the ImageNet module's time; every promise
    about the real backbones is tested on them elsewhere."""
    import keras

    from tl_keras.demo import digits_backbone
    from tl_keras.models.backbones.hub import save_hub_module

    keras.utils.set_random_seed(0)
    return save_hub_module(digits_backbone("tiny_backbone"), str(tmp_path_factory.mktemp("tiny_hub") / "module"))


@pytest.fixture
def browser():
    """A headless Chromium driven by selenium (Debian's chromium and chromium-driver; `.ci/run` installs
    them). Outside CI a machine without them skips the browser test, saying why; in CI it fails."""
    import shutil

    from selenium import webdriver

    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        message = "the browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    try:
        yield driver
    finally:
        driver.quit()


def shown_images(driver) -> list[dict]:
    """Every <img> of the page in `driver`: whether it decoded (its natural width) and its alt text."""
    return driver.execute_script(
        "return [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, alt: i.alt}));")


@pytest.fixture
def black_hole_url():
    """An http URL on 127.0.0.1 whose server accepts connections and never answers: a network that
    hangs rather than fails fast (a captive portal, a dropped route)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # never read from, never answered
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(scope="session")
def flowers_result(tmp_path_factory):
    """tl_keras.train on the real flowers photos (5 classes) with the 0.35 Hub backbone at 64 px, with
    the reporting options on: class weights, a warm-up cosine phase 2, pictures and TensorBoard logs."""
    import tl_keras

    out = tmp_path_factory.mktemp("flowers")
    result = tl_keras.train(
        asset(FLOWERS), backbone=asset(HUB_035), image_size=64, head_epochs=3, fine_tune_epochs=1,
        unfreeze_blocks=1, class_weight="auto", fine_tune_schedule="warmup-cosine", plots_dir=str(out / "plots"),
        tensorboard_dir=str(out / "tb"), output=str(out / "flowers"), verbose=0,
    )
    result.plots_dir, result.tensorboard_dir = str(out / "plots"), str(out / "tb")
    return result


# Loading a Hub SavedModel costs seconds (restoring hundreds of functions), and most tests build a
# model on one of the same two folders. `tl_keras`' own module pool (`ModulePool`: a released module
# comes back with the values it was loaded with, tested in test_hub.py) lets each test process reuse
# them: the modules a test's own body loaded are handed back once the test, its teardown included, is
# over. Modules that fixtures load (session and module fixtures live on) are never handed back, so a
# model a later test still uses never shares its module.
_ACQUIRED: list | None = None


def _module_pool():
    """tl_keras' module pool, its `acquire` recording into `_ACQUIRED` (patched once per process)."""
    from tl_keras.models.backbones import hub

    pool = hub.MODULE_POOL
    if not getattr(pool.acquire, "_tl_recording", False):
        acquire = pool.acquire

        def recorded(path):
            module = acquire(path)
            if _ACQUIRED is not None:
                _ACQUIRED.append((module, path))
            return module

        recorded._tl_recording = True
        pool.acquire = recorded
    return pool


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    global _ACQUIRED
    _module_pool()
    _ACQUIRED = []
    try:
        yield
    finally:
        item._tl_acquired, _ACQUIRED = _ACQUIRED, None


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    seen = set()
    for module, path in getattr(item, "_tl_acquired", ()):
        if id(module) not in seen:
            seen.add(id(module))
            _module_pool().release(module, path)
