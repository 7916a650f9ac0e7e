"""The example scripts run as documented (small sizes and budgets)."""

import os
import sys

from conftest import HYMENOPTERA, ROOT, asset


def _run_example(name, *args):
    """Runs `examples/<name>` as `python examples/<name> ARGS` would (as `__main__`, with that argv),
    in this process to spare a TensorFlow start-up; returns what it printed."""
    import contextlib
    import io
    import runpy

    out, argv = io.StringIO(), sys.argv
    sys.argv = [os.path.join(ROOT, "examples", name), *args]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


def test_fine_tune_folder_example(tmp_path, tiny_hub):
    # Each example end to end on a small stand-in module: what they call is tested on the real backbones.
    out = _run_example("fine_tune_folder.py", asset(HYMENOPTERA), "--backbone", tiny_hub, "--image-size", "32",
                       "--head-epochs", "1", "--fine-tune-epochs", "1", "--output", str(tmp_path / "example"))
    assert "after fine-tuning" in out and "'top_k'" in out
    assert os.path.exists(tmp_path / "example" / "1" / "saved_model.pb")


def test_report_pictures_example(tmp_path, tiny_hub):
    from conftest import FLOWERS

    # The script end to end, on a small stand-in module (the pictures' content is tested in test_plots).
    out = _run_example("report_pictures.py", asset(FLOWERS), "--backbone", tiny_hub, "--image-size", "32",
                       "--head-epochs", "2", "--fine-tune-epochs", "1", "--output", str(tmp_path / "pictures"))
    assert "confusion matrix" in out and "tulips" in out
    assert sorted(os.listdir(tmp_path / "pictures")) == ["confusion_val.png", "curves.png", "misclassified_val.png"]


def test_choose_strategy_example(tmp_path, tiny_hub):
    # The script end to end, on a small stand-in module: each step is tested on the real backbones in
    # test_advisor, test_lr_finder and test_cli.
    out = _run_example("choose_strategy.py", asset(HYMENOPTERA), "--backbone", tiny_hub, "--image-size", "32",
                       "--epochs", "3", "--lr-steps", "20", "--per-class", "30", "--output", str(tmp_path / "strategy"))
    assert "linear-probe accuracy by depth" in out and "suggested learning rates: head" in out
    assert "from scratch:" in out and os.path.exists(tmp_path / "strategy" / "1" / "saved_model.pb")
