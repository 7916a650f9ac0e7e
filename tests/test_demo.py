"""The embedded default: `tl-keras demo` runs offline on scikit-learn's bundled digits."""

import json
import os
import subprocess
import sys


def test_demo_transfers_through_the_public_path(tmp_path):
    metrics_path = tmp_path / "demo.json"
    proc = subprocess.run([sys.executable, "-m", "tl_keras.cli", "demo", "--output", str(tmp_path / "demo"),
                           "--metrics-json", str(metrics_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "from scratch" in proc.stdout and "transfer" in proc.stdout
    metrics = json.loads(metrics_path.read_text())
    assert metrics["target_train_images"] == 50
    assert os.path.exists(os.path.join(metrics["hub_backbone_dir"], "saved_model.pb"))
    assert os.path.exists(os.path.join(metrics["export_dir"], "assets", "labels.txt"))
    # Five classes, chance is 0.2: the pretrained digit features must carry over.
    assert metrics["head_val_accuracy"] > 0.5 and metrics["transfer_val_accuracy"] > 0.6
    assert 0.0 < metrics["scratch_val_accuracy"] <= 1.0
