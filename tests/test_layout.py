"""The package's layout as a contract: the flow's layers, no import circle, old import paths."""

import importlib
import pathlib
import subprocess
import sys

import grimp
import pytest

from tl_keras import _compat

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _graph():
    return grimp.build_graph("tl_keras", cache_dir=None)


def test_each_step_imports_only_the_steps_below_it():
    # setup.cfg's [importlinter] contract; an upward import fails here with import-linter's report.
    lint_imports = pathlib.Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def _circles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), imports inside functions included."""
    modules = sorted(m for m in graph.modules if not m.endswith("__init__"))
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(m):
        index[m] = low[m] = counter[0]
        counter[0] += 1
        stack.append(m)
        on.add(m)
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                on.discard(n)
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_module_imports_itself_back_through_others():
    graph = _graph()
    # A package's __init__ hands its children's names out lazily; count module-to-module imports only.
    assert _circles(graph) == []


def test_the_circle_check_finds_a_circle():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=a, imported=b)
    assert _circles(graph) == [["p.a", "p.b", "p.c"]]


@pytest.mark.parametrize("old, new", sorted(_compat.MOVED.items()))
def test_an_old_module_path_is_the_module_that_holds_its_code_now(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(old).__spec__.name == new


@pytest.mark.parametrize("statement", [
    "from tl_keras.data import load_image_folder, load_data, ImageFolder, read_images, epoch_variable, decode_image",
    "from tl_keras.hub import HubBackbone, MODULE_POOL, resolve_handle, save_hub_module",
    "from tl_keras.training import fine_tune, FineTuneHistory, compile_for_phase, BestEpoch",
    "from tl_keras.features import compute_features, compute_boundary, FeatureSet",
    "from tl_keras.export import export_saved_model, latest_version_dir, read_metadata, LABELS_FILE",
    "from tl_keras.serving import ExportedModel",
    "from tl_keras.evaluation import classification_report, format_report",
    "from tl_keras.cli import main, build_parser",
    "from tl_keras.advisor import advise, Advice, PLANS",
    "from tl_keras.registry import resolve_backbone, parse_unfreeze_blocks, search_depths",
    "from tl_keras.distribute import TESTED_KERAS, check_keras_version, get_strategy",
    "import tl_keras.backbones, tl_keras.tflite, tl_keras.onnx_export, tl_keras.server, tl_keras.label_files",
])
def test_old_imports_still_work(statement):
    exec(statement, {})


def test_every_public_name_of_the_package_resolves():
    import tl_keras

    for name in tl_keras.__all__:
        assert getattr(tl_keras, name) is not None, name
    assert tl_keras.hub.HubBackbone is tl_keras.HubBackbone  # an old module read as an attribute


def test_no_module_is_over_the_size_a_reader_holds():
    root = pathlib.Path(importlib.import_module("tl_keras").__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert max(sizes.values()) <= 520, {p: n for p, n in sizes.items() if n > 520}
