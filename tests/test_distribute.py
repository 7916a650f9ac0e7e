"""Strategy selection, and real MirroredStrategy training over two logical CPU devices."""

import json
import os

import pytest
import tensorflow as tf

from conftest import HUB_035, HYMENOPTERA, asset, run_python
from tl_keras.distribute import get_strategy, is_chief


def test_auto_is_the_default_strategy_on_one_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert get_strategy("auto") is tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert get_strategy(mirrored) is mirrored
    with pytest.raises(ValueError, match="strategy"):
        get_strategy("tpu-please")


def test_tf_config_decides_the_chief(monkeypatch):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        get_strategy("auto")


MIRRORED = """
import json, sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tl_keras
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = tl_keras.train(sys.argv[1], backbone=sys.argv[2], image_size=64, batch_size=16, head_epochs=2,
                        fine_tune_epochs=1, unfreeze_blocks=1, strategy=strategy, output=sys.argv[3], verbose=0)
kinds = sorted({type(v.value).__name__ for v in result.model.backbone.hub_variables})
print(json.dumps({"replicas": result.metrics["num_replicas"], "batch": result.metrics["global_batch_size"],
                  "acc": result.metrics["val_accuracy"], "export": result.export_dir, "kinds": kinds}))
"""


def test_mirrored_strategy_over_two_logical_cpus_trains_and_exports(tmp_path):
    out = run_python(MIRRORED, asset(HYMENOPTERA), asset(HUB_035), str(tmp_path / "mirrored"))
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["batch"] == 32
    assert set(report["kinds"]) <= {"MirroredVariable", "SyncOnReadVariable"} and "MirroredVariable" in report["kinds"]
    assert report["acc"] > 0.6
    assert os.path.exists(os.path.join(report["export"], "saved_model.pb"))
