"""Strategy selection, MirroredStrategy over two logical CPU devices, MultiWorkerMirroredStrategy with
2 local worker processes (3 under `-m slow`), a worker lost and the cluster restarted, and mixed
precision."""

import json
import os
import subprocess

import pytest
import tensorflow as tf
from conftest import (
    HUB_035,
    HYMENOPTERA_MAJORITY,
    MARGIN,
    asset,
    free_ports,
    hymenoptera_subset,
    run_python,
)

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


# A fresh process (logical devices must be set before TensorFlow starts): the public path on the real
# backbone, then each replica's copy of every variable phase 2 trained.
TWO_LOGICAL_CPUS = """
import json, sys, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import tl_keras

class Moved(keras.callbacks.Callback):  # how far each fit moved the backbone weights it trained (0 when none)
    def __init__(self):
        super().__init__()
        self.moved = []

    def on_train_begin(self, logs=None):
        self.trained = [v for v in self.model.trainable_variables if v.name.startswith("block_")]
        self.start = [v.numpy().copy() for v in self.trained]

    def on_train_end(self, logs=None):
        self.moved.append(max((float(np.abs(v.numpy() - s).max()) for v, s in zip(self.trained, self.start)), default=0.0))

moved = Moved()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = tl_keras.train(sys.argv[1], backbone=sys.argv[2], image_size=64, batch_size=16, head_epochs=2,
                        fine_tune_epochs=1, unfreeze_blocks=2, strategy=strategy, output=sys.argv[3], verbose=0,
                        callbacks=[moved])
backbone = result.model.backbone
kinds = sorted({type(v.value).__name__ for v in backbone.hub_variables})
full = result.model.evaluate(result.data.dataset("val", batch_size=32), verbose=0, return_dict=True)
trained = [v.value for v in backbone.hub_variables if v.trainable]
copies = [[c.numpy() for c in v.values] for v in trained]
print(json.dumps({"replicas": result.metrics["num_replicas"], "batch": result.metrics["global_batch_size"],
                  "acc": result.metrics["val_accuracy"], "export": result.export_dir, "kinds": kinds,
                  "boundary": result.metrics["boundary_cache"]["used"], "kept": result.metrics["fine_tune_kept"],
                  "unfrozen": result.metrics["unfrozen_blocks"], "head_epochs": result.metrics["head_epochs"],
                  "val_losses": result.metrics["history"]["val_loss"], "val_loss": result.metrics["val_loss"], "full_loss": full["loss"],
                  "trained": len(trained), "moved": moved.moved, "devices": sorted({c.device for v in trained for c in v.values}),
                  "replica_gap": max(float(np.abs(a - b).max()) for a, b in copies)}))
"""


@pytest.fixture(scope="module")
def two_logical_cpus(tmp_path_factory):
    """The report of TWO_LOGICAL_CPUS."""
    tmp_path = tmp_path_factory.mktemp("mirrored")
    # 60 training photos per class and the whole val split (70 ants, 83 bees: majority 0.542 as in the folder)
    data = hymenoptera_subset(tmp_path / "labels.csv", train=60, val=83)
    return json.loads(run_python(TWO_LOGICAL_CPUS, data, asset(HUB_035), str(tmp_path / "mirrored")).stdout.strip().splitlines()[-1])


@pytest.mark.xdist_group("two_logical_cpus")
def test_mirrored_strategy_over_two_logical_cpus_trains_and_exports(two_logical_cpus):
    report = two_logical_cpus
    assert report["replicas"] == 2 and report["batch"] == 32
    assert set(report["kinds"]) <= {"MirroredVariable", "SyncOnReadVariable"} and "MirroredVariable" in report["kinds"]
    assert report["acc"] > HYMENOPTERA_MAJORITY + MARGIN
    assert os.path.exists(os.path.join(report["export"], "saved_model.pb"))
    # Phase 2 (the top 2 blocks) on its boundary cache across both replicas, and every replica's
    # variables hold the kept weights: the model scores the val loss the run reported (phase 2's, or
    # the head's when phase 2 did not beat it). A depth search under a strategy: the cluster test below.
    assert report["boundary"] and len(report["unfrozen"]) == 2
    head_losses, phase_two_loss = report["val_losses"][:report["head_epochs"]], report["val_losses"][-1]
    assert report["kept"] == (phase_two_loss < min(head_losses))
    assert report["val_loss"] == pytest.approx(phase_two_loss if report["kept"] else min(head_losses), abs=1e-4)
    assert report["full_loss"] == pytest.approx(report["val_loss"], abs=1e-4)
    # Phase 2 trained the top blocks' pieces of the split module (the ones a cut backbone is made of)
    # on both devices, and each replica's copy of every trained variable ends the same, bit for bit.
    assert report["trained"] > 0 and len(report["devices"]) == 2 and report["replica_gap"] == 0.0
    assert len(report["moved"]) == 2 and report["moved"][-1] > 1e-4  # phase 2's fit (the second) moved the blocks' weights


# One cluster run as code, so each worker can report its weights; the same settings as CLUSTER_FLAGS.
MULTI_WORKER = """
import json, sys, numpy as np
import tl_keras
result = tl_keras.train(sys.argv[1], backbone=sys.argv[2], image_size=32, batch_size=16, head_epochs=1,
                        fine_tune_epochs=3, unfreeze_blocks=(1, 2), output=sys.argv[3], evaluate=False, verbose=0)
weights = np.concatenate([w.numpy().ravel() for w in result.model.trainable_weights])
print(json.dumps({"replicas": result.metrics["num_replicas"], "batch": result.metrics["global_batch_size"],
                  "acc": result.metrics["val_accuracy"], "head_epochs": result.metrics["head_epochs"],
                  "history": result.metrics["history"], "export": result.export_dir,
                  "search": result.metrics["depth_search"], "unfrozen": result.metrics["unfrozen_blocks"],
                  "weights": [float(weights.sum()), float(np.abs(weights).sum())]}))
"""
CLUSTER_FLAGS = ["--image-size", "32", "--batch-size", "16", "--head-epochs", "1", "--fine-tune-epochs", "3",
                 "--unfreeze-blocks", "1,2", "--no-evaluate"]


def _cluster(n, args, code=MULTI_WORKER, logs=None):
    """Starts `n` worker processes on 127.0.0.1 ports, TF_CONFIG set as on n machines. Output goes to
    pipes, or with `logs` (a folder) to files there, for chatty runs that could fill a pipe."""
    import sys

    workers = [f"127.0.0.1:{p}" for p in free_ports(n)]
    procs = []
    for index in range(n):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "tl_keras.cli", *args]
        if logs is None:
            out = err = subprocess.PIPE
        else:
            os.makedirs(logs, exist_ok=True)
            out = open(os.path.join(logs, f"worker{index}.out"), "a")
            err = open(os.path.join(logs, f"worker{index}.err"), "a")
        procs.append(subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env))
    return procs


def _tail(logs, index):
    with open(os.path.join(logs, f"worker{index}.err")) as f:
        return f.read()[-3000:]


def _reports(procs):
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


@pytest.mark.parametrize("workers", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_a_cluster_trains_in_step_like_one_process_and_resumes_after_a_worker_is_killed(tmp_path, workers, tiny_hub):
    """MultiWorkerMirroredStrategy from TF_CONFIG with local worker processes: the workers stay in sync
    through a phase-2 depth search (1 and 2 blocks, each on its boundary cache), only the chief exports,
    the result matches one process; a worker SIGKILLed in the second depth and the cluster restarted
    with the same command end with the uninterrupted cluster's history and depth.

    The mechanics on a small stand-in module (test_mirrored_strategy_... shows distributed training
    learning on the real backbone)."""
    import signal
    import time

    import tl_keras

    data = hymenoptera_subset(tmp_path / "labels.csv", train=48, val=40)
    reference = str(tmp_path / "reference")
    reports = _reports(_cluster(workers, [data, tiny_hub, reference]))
    chief, others = reports[0], reports[1:]
    assert all(r["replicas"] == workers and r["batch"] == 16 * workers for r in reports)  # global = per worker x workers
    assert all(r["weights"] == chief["weights"] for r in others)  # workers stay in sync, bit for bit
    assert all(r["history"] == chief["history"] and r["head_epochs"] == 1 for r in others), {k: (chief["history"][k], others[0]["history"].get(k)) for k in chief["history"] if chief["history"][k] != others[0]["history"].get(k)}  # phases switch in step
    # Every worker tried both depths on its boundary cache and kept the same one (the same weights, above).
    assert [t["unfreeze_blocks"] for t in chief["search"]] == [1, 2] and all(t["boundary_cache"] for t in chief["search"])
    scores = lambda records: [{k: v for k, v in r.items() if k not in ("seconds", "boundary_cache")} for r in records]  # noqa: E731
    assert all(scores(r["search"]) == scores(chief["search"]) and r["unfrozen"] == chief["unfrozen"] for r in others)
    assert chief["export"] == os.path.join(reference, "1") and all(r["export"] is None for r in others)
    assert sorted(os.listdir(reference)) == ["1"]  # only the chief's version; no staging or checkpoint folder left
    # The same training in this process, one replica and the same global batch: the same result within noise.
    single = tl_keras.train(data, backbone=tiny_hub, image_size=32, batch_size=16 * workers,
                            head_epochs=1, fine_tune_epochs=3, unfreeze_blocks=(1, 2), export=False, evaluate=False,
                            checkpoint_dir=None, verbose=0)
    assert single.metrics["num_replicas"] == 1 and abs(chief["acc"] - single.metrics["val_accuracy"]) <= 0.06

    # The same run from the command line; the last worker's machine dies in phase 2's second depth.
    logs, run = str(tmp_path / "logs"), tmp_path / "run"
    command = ["train", data, "--backbone", tiny_hub, *CLUSTER_FLAGS, "--output", str(run),
               "--metrics-json", str(run) + ".json"]
    procs = _cluster(workers, command, code=None, logs=logs)
    latest = run / ".checkpoint" / "phase2_top2" / "LATEST"
    deadline = time.time() + 600
    while time.time() < deadline and not (latest.exists() and latest.read_text() >= "epoch-00002"):
        assert all(p.poll() is None for p in procs), _tail(logs, 0)
        time.sleep(0.05)
    procs[-1].send_signal(signal.SIGKILL)
    for proc in procs[:-1]:  # the machine is lost: the cluster manager stops the others (their collectives would fail)
        proc.send_signal(signal.SIGKILL)
    assert all(proc.wait() == -signal.SIGKILL for proc in procs)
    assert latest.exists()  # the chief's state survives on the shared folder

    for i, proc in enumerate(_cluster(workers, command, code=None, logs=logs)):  # the cluster restarts, same command
        assert proc.wait(timeout=900) == 0, _tail(logs, i)
    resumed = json.loads(open(str(run) + ".json").read())
    assert resumed["resumed"] and resumed["export_dir"] == str(run / "1") and resumed["num_replicas"] == workers
    assert resumed["history"] == chief["history"]  # same epochs, same metrics as the uninterrupted cluster
    # Each depth scored the same; seconds and boundary_cache describe this process's work (the first
    # depth had finished before the kill, so the restart took it from the checkpoint).
    assert scores(resumed["depth_search"]) == scores(chief["search"])
    assert [r["boundary_cache"] for r in resumed["depth_search"]] == [False, True]
    assert not (run / ".checkpoint").exists()


def test_the_private_keras_override_is_guarded_by_the_tested_keras_range():
    import keras
    from conftest import ROOT

    from tl_keras._internals import TESTED_KERAS, check_keras_version
    from tl_keras.distribute import MultiWorkerFitMixin

    (low_major, low_minor), (high_major, high_minor) = TESTED_KERAS
    check_keras_version()  # the running Keras is in the range
    with pytest.raises(RuntimeError, match=r"tested with Keras >=3\.11,<3\.16 only; this is Keras 3\.10\.2"):
        check_keras_version("3.10.2")
    with pytest.raises(RuntimeError, match="this is Keras 3.16.0"):
        check_keras_version("3.16.0")
    with open(os.path.join(ROOT, "setup.cfg")) as f:  # the range the package declares is the one guarded
        assert f"keras>={low_major}.{low_minor},<{high_major}.{high_minor}" in f.read()

    class MultiWorkerModel(MultiWorkerFitMixin, keras.Model):
        def _multi_worker(self):
            return True

    inputs = keras.Input((2,))
    model = MultiWorkerModel(inputs, keras.layers.Dense(1)(inputs))
    original = keras.__version__
    try:  # the override itself refuses to run under an untested Keras
        keras.__version__ = "3.10.0"
        with pytest.raises(RuntimeError, match="this is Keras 3.10.0"):
            model._maybe_symbolic_build(iterator=iter(()))
    finally:
        keras.__version__ = original


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

    from tl_keras.distribute import dtype_policy
    from tl_keras.models.classifier import build_classifier
    from tl_keras.training.compile import compile_for_phase

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
