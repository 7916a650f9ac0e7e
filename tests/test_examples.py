"""The example scripts run as documented (small sizes and budgets)."""

import os
import subprocess
import sys

import pytest

from conftest import HUB_035, HYMENOPTERA, ROOT, asset


def test_fine_tune_folder_example(tmp_path):
    script = os.path.join(ROOT, "examples", "fine_tune_folder.py")
    proc = subprocess.run(
        [sys.executable, script, asset(HYMENOPTERA), "--backbone", asset(HUB_035), "--image-size", "64",
         "--head-epochs", "1", "--fine-tune-epochs", "1", "--output", str(tmp_path / "example")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after fine-tuning" in proc.stdout and "'top_k'" in proc.stdout
    assert os.path.exists(tmp_path / "example" / "1" / "saved_model.pb")


@pytest.mark.slow  # the pictures themselves are covered by test_plots; this checks the script end to end
def test_report_pictures_example(tmp_path):
    from conftest import FLOWERS

    script = os.path.join(ROOT, "examples", "report_pictures.py")
    proc = subprocess.run(
        [sys.executable, script, asset(FLOWERS), "--backbone", asset(HUB_035), "--image-size", "48",
         "--head-epochs", "2", "--fine-tune-epochs", "1", "--output", str(tmp_path / "pictures")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "confusion matrix" in proc.stdout and "tulips" in proc.stdout
    assert sorted(os.listdir(tmp_path / "pictures")) == ["confusion_val.png", "curves.png", "misclassified_val.png"]
