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


MULTI_WORKER = """
import json, sys, numpy as np
import tl_keras
result = tl_keras.train(sys.argv[1], backbone=sys.argv[2], image_size=64, batch_size=16, head_epochs=2,
                        fine_tune_epochs=1, unfreeze_blocks=1, output=sys.argv[3], verbose=0)
weights = np.concatenate([w.numpy().ravel() for w in result.model.trainable_weights])
print(json.dumps({"replicas": result.metrics["num_replicas"], "acc": result.metrics["val_accuracy"],
                  "export": result.export_dir, "weights": [float(weights.sum()), float(np.abs(weights).sum())]}))
"""


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_strategy_from_tf_config_with_two_local_workers(tmp_path):
    import subprocess
    import sys

    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = str(tmp_path / "mw")
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-c", MULTI_WORKER, asset(HYMENOPTERA), asset(HUB_035), out],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    chief, other = reports
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["weights"] == other["weights"]  # workers stay in sync, bit for bit
    assert chief["acc"] == other["acc"] and chief["acc"] > 0.6
    assert chief["export"] == os.path.join(out, "1") and other["export"] is None
    assert sorted(os.listdir(out)) == ["1"]  # only the chief's version, no staging folders


def test_mixed_precision_warns_and_stays_float32_on_cpu():
    from tl_keras.distribute import precision_policy

    with pytest.warns(UserWarning, match="needs a GPU"):
        assert precision_policy(True) == "float32"
    assert precision_policy(False) == "float32"


def test_mixed_float16_build_as_on_a_gpu_keeps_hub_modules_and_the_output_in_float32():
    """What `mixed_precision=True` builds on a GPU, built and trained here on the CPU."""
    import keras
    import numpy as np

    from conftest import KERAS_035
    from tl_keras.classifier import build_classifier
    from tl_keras.distribute import dtype_policy
    from tl_keras.training import compile_for_phase

    with dtype_policy("mixed_float16"):
        keras_model = build_classifier("keras:mobilenet_v2", 2, weights=asset(KERAS_035), image_size=32)
        hub_model = build_classifier(asset(HUB_035), 2, image_size=32)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert keras_model.backbone.compute_dtype == "float16"
    assert hub_model.backbone.compute_dtype == "float32"  # a SavedModel runs in the dtype it was traced for
    images = np.random.default_rng(0).uniform(0, 255, (4, 40, 40, 3)).astype("float32")
    for model in (keras_model, hub_model):
        assert model.get_layer("predictions").compute_dtype == "float32"
        probabilities = model.predict(images, verbose=0)
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
        model.backbone.set_trainable_blocks(1)
        compile_for_phase(model, 1e-3)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(images, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
