"""TrainConfig: one validated, serialisable value for a run's settings; the CLI flags are views of it.

Pure Python: nothing here imports TensorFlow (one test checks that in a fresh process).
"""

import dataclasses
import json
import subprocess
import sys

import pytest
from conftest import assert_examples_run

from tl_keras.config import FORMAT, TrainConfig


def test_defaults_round_trip_through_json():
    config = TrainConfig(hidden_units=[512, 256], unfreeze_blocks="all", class_weight={0: 1.0, 1: 2.5},
                         jit_compile=False, transfer="fine-tune-all", cache_features=False)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["format"] == FORMAT and data["hidden_units"] == [512, 256] and data["class_weight"] == {"0": 1.0, "1": 2.5}
    again = TrainConfig.from_dict(data)
    assert again == config and again.hidden_units == (512, 256) and again.class_weight == {0: 1.0, 1: 2.5}
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


@pytest.mark.parametrize("changes, message", [
    ({"dropout": 1.5}, "`dropout` must be in [0, 1). Received: dropout=1.5"),
    ({"head_epochs": -1}, "`head_epochs` must be a non-negative integer. Received: head_epochs=-1"),
    ({"head_epochs": True}, "`head_epochs` must be a non-negative integer"),
    ({"head_epochs": 0, "fine_tune_epochs": 0}, "nothing to train"),
    ({"batch_size": 0}, "`batch_size` must be a positive integer"),
    ({"image_size": 16}, "`image_size` must be an integer >= 32. Received: image_size=16"),
    ({"unfreeze_blocks": "some"}, "`unfreeze_blocks` must be a non-negative integer, 'all', 'search'"),
    ({"unfreeze_blocks": "0,2"}, "as a search takes block counts of at least 1"),
    ({"layer_decay": 2.0}, "`layer_decay` must be in [0, 1]"),
    ({"learning_rate": 0.0}, "`learning_rate` must be > 0"),
    ({"validation_split": 1.0}, "`validation_split` must be in (0, 1)"),
    ({"fine_tune_schedule": "linear"}, "`fine_tune_schedule` must be one of 'auto', 'constant', 'cosine', 'warmup-cosine'"),
    ({"class_weight": "balanced"}, "`class_weight` must be None, 'auto' or a dict"),
    ({"cache_features": 1}, "`cache_features` must be one of True, False, 'auto'"),
    ({"hidden_units": (512, 0)}, "`hidden_units` must be positive integers"),
    ({"transfer": "fine-tune-some"}, "`transfer` must be one of 'auto', 'head-only'"),
    ({"distribute": "tpu"}, "`distribute` must be one of"),
    ({"early_stopping_patience": -1}, "`early_stopping_patience` must be"),
    ({"backbone": ""}, "`backbone` must be a non-empty string"),
])
def test_every_setting_is_validated_once_with_the_rule_and_the_value(changes, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**changes)
    assert message in str(err.value)
    with pytest.raises(ValueError):  # replace validates as the constructor does
        TrainConfig().replace(**changes)


def test_unknown_keys_and_formats_are_errors_that_name_them():
    with pytest.raises(ValueError, match="Unknown training setting 'head_epoch'. Did you mean 'head_epochs'"):
        TrainConfig().replace(head_epoch=3)
    with pytest.raises(ValueError, match="'learning_rat'"):
        TrainConfig.from_dict({"format": FORMAT, "learning_rat": 0.1})
    with pytest.raises(ValueError, match="Unknown TrainConfig format 'tl_keras.TrainConfig/9'"):
        TrainConfig.from_dict({"format": "tl_keras.TrainConfig/9"})


def test_strategy_is_the_older_name_of_transfer_and_distribute():
    assert TrainConfig().replace(strategy="head-only").transfer == "head-only"
    assert TrainConfig().replace(strategy="mirrored").distribute == "mirrored"
    with pytest.raises(ValueError, match="pass one"):
        TrainConfig().replace(strategy="mirrored", distribute="default")
    with pytest.raises(ValueError, match="transfer-learning strategy"):
        TrainConfig().replace(strategy="fine-tune-some")


def test_fine_tune_rate_is_a_tenth_unless_given():
    assert TrainConfig(learning_rate=2e-3).fine_tune_lr == pytest.approx(2e-4)
    assert TrainConfig(learning_rate=2e-3, fine_tune_learning_rate=5e-5).fine_tune_lr == 5e-5


def test_load_reads_a_config_file_or_an_exports_metadata(tmp_path):
    config = TrainConfig(head_epochs=7, seed=3)
    assert TrainConfig.load(config.save(str(tmp_path / "run.json"))) == config
    (tmp_path / "tl_keras.json").write_text(json.dumps({"format": "tl_keras/1", "class_names": ["a", "b"],
                                                        "config": config.to_dict()}))
    assert TrainConfig.load(str(tmp_path / "tl_keras.json")) == config
    # A config recorded before `crop_to_aspect_ratio` existed describes a run on squeezed images.
    older = {k: v for k, v in config.to_dict().items() if k != "crop_to_aspect_ratio"}
    assert config.crop_to_aspect_ratio and TrainConfig.from_dict(older) == config.replace(crop_to_aspect_ratio=False)
    with pytest.raises(ValueError, match="No config file at"):
        TrainConfig.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"head_epochs": -2}))
    with pytest.raises(ValueError, match=r"bad.json: `head_epochs` must be a non-negative integer"):
        TrainConfig.load(str(tmp_path / "bad.json"))


def test_cli_train_flags_are_generated_from_the_fields_and_keep_the_old_names():
    from tl_keras.cli.parser import build_parser

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))
    flags = {s for action in train._actions for s in action.option_strings}
    for field in dataclasses.fields(TrainConfig):  # one flag per setting
        assert (field.metadata["flag"] or "--" + field.name.replace("_", "-")) in flags, field.name
    for old in ("--no-augment", "--early-stopping", "--no-feature-cache", "--no-deterministic", "--mixed-precision",
                "--jit-compile", "--strategy", "--distribute", "--compare-scratch", "--folds", "--output",
                "--metrics-json", "--plots", "--tensorboard", "--checkpoint-dir", "--no-checkpoint", "--no-evaluate"):
        assert old in flags, old
    assert {"--transfer", "--config", "--save-config"} <= flags


def test_flags_override_a_config_file_and_save_config_writes_the_result(tmp_path, capsys):
    from tl_keras.cli.commands import main

    base = tmp_path / "base.json"
    TrainConfig(head_epochs=7, dropout=0.3, augment=False, hidden_units=(64,)).save(str(base))
    out = tmp_path / "resolved.json"
    assert main(["train", "unused_dir", "--config", str(base), "--dropout", "0.1", "--strategy", "head-only",
                 "--jit-compile", "off", "--augment", "--save-config", str(out)]) == 0
    saved = TrainConfig.load(str(out))
    assert saved == TrainConfig(head_epochs=7, dropout=0.1, augment=True, hidden_units=(64,), transfer="head-only",
                                jit_compile=False)
    assert "config written to" in capsys.readouterr().out
    # A bad flag value is the config's own message, naming the flag; exit 2.
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "unused_dir", "--dropout", "1.5"])
    assert exit_info.value.code == 2 and "argument --dropout: `dropout` must be in [0, 1)" in capsys.readouterr().err
    assert main(["train", "unused_dir", "--config", str(tmp_path / "nope.json"), "--save-config", str(out)]) == 2
    assert "No config file at" in capsys.readouterr().err


def test_config_flags_are_the_inverse_of_the_parser(tmp_path):
    from tl_keras.cli.flags import config_flags
    from tl_keras.cli.parser import build_parser

    config = TrainConfig(backbone="keras:mobilenet_v2", image_size=96, hidden_units=(512, 256), unfreeze_blocks="all",
                         layer_decay=0.8, augment=False, jit_compile=True, cache_features=False, transfer="cut",
                         cut="block_12", compare_scratch=True, early_stopping_patience=3, learning_rate=3e-4,
                         crop_to_aspect_ratio=False)
    argv = ["train", "data"] + " ".join(config_flags(config)).split()
    args = build_parser().parse_args(argv)
    from tl_keras.cli.commands import _settings

    assert _settings(args) == config


def test_config_and_registry_and_cli_help_import_no_tensorflow():
    code = ("import sys\n"
            "import tl_keras.config, tl_keras.registry\n"
            "from tl_keras.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['advise', '--help']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tensorflow_hub') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_unfreeze_blocks_takes_a_depth_search_and_the_ladder_is_around_the_default():
    from tl_keras.config import search_depths

    assert TrainConfig(unfreeze_blocks="8,2, 5").unfreeze_blocks == (2, 5, 8)  # the CLI's text, sorted
    assert TrainConfig(unfreeze_blocks=[3]).unfreeze_blocks == 3  # one count is that count
    config = TrainConfig(unfreeze_blocks=(2, 5))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert search_depths("search", 8, 17) == [4, 8, 12]  # MobileNetV2: half, the default, one and a half
    assert search_depths("search", "all", 4) == [2, 4] and search_depths((2, 30), 8, 17) == [2, 17]
    assert search_depths(5, 8, 17) == [5] and search_depths(None, 8, 17) == [None]


def test_phase_two_patience_follows_the_schedule_unless_given():
    # A constant rate stops early as phase 1 does; a schedule that decays to 0 runs to its end (its last
    # epochs settle the weights), unless fine_tune_patience says otherwise; 0 means never in both.
    assert TrainConfig().patience(1) == 3 and TrainConfig(fine_tune_schedule="constant").patience(2) == 3
    assert TrainConfig(fine_tune_schedule="warmup-cosine").patience(2) is None
    assert TrainConfig(fine_tune_schedule="warmup-cosine").patience(1) == 3
    assert TrainConfig(fine_tune_schedule="cosine", fine_tune_patience=2).patience(2) == 2
    assert TrainConfig(fine_tune_patience=0).patience(2) is None
    assert TrainConfig(early_stopping_patience=0, fine_tune_schedule="constant").patience(2) is None
    with pytest.raises(ValueError, match="`fine_tune_patience` must be a non-negative integer"):
        TrainConfig(fine_tune_patience=-1)


def test_phase_two_schedule_follows_the_measured_symmetry_unless_given():
    # auto: a decaying schedule (and so no early stop) only where the run found a domain with no "up".
    assert TrainConfig().fine_tune_schedule == "auto" and TrainConfig().phase_two_schedule == "constant"
    far, photos = TrainConfig(symmetry="dihedral"), TrainConfig(symmetry="flip")
    assert (far.phase_two_schedule, far.patience(2)) == ("warmup-cosine", None)
    assert (photos.phase_two_schedule, photos.patience(2)) == ("constant", 3)
    assert TrainConfig(symmetry="dihedral", fine_tune_schedule="constant").phase_two_schedule == "constant"
    assert TrainConfig(symmetry="flip", fine_tune_schedule="cosine").phase_two_schedule == "cosine"
    from tl_keras.training.compile import phase_schedule

    with pytest.raises(ValueError, match="phase_two_schedule"):
        phase_schedule("auto", 1e-4, 10, 2)


def test_the_module_examples_run():
    import tl_keras.config

    assert_examples_run(tl_keras.config, 5)
