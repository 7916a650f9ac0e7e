"""ONNX export: the model trained on the real ants/bees photos, run by onnxruntime, agrees with the SavedModel."""

import json
import os

import pytest
from conftest import HYMENOPTERA, HYMENOPTERA_MAJORITY, MARGIN, asset


def test_onnx_export_agrees_with_the_saved_model_on_real_val_images(hymenoptera_result, tmp_path, capsys):
    import onnx

    from tl_keras.cli.commands import main

    output = tmp_path / "onnx" / "model.onnx"
    assert main(["export-onnx", hymenoptera_result.export_dir, "--output", str(output), "--check-data", asset(HYMENOPTERA),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_check_images"] == 153 and report["opset"] == 17
    assert report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 1e-4
    assert report["accuracy"] == report["saved_model_accuracy"] > HYMENOPTERA_MAJORITY + MARGIN
    model = onnx.load(str(output))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["labels"]) == ["ants", "bees"] and props["image_size"] == "96"
    assert json.loads(props["crop_to_aspect_ratio"]) is True and "centred square" in props["input"]
    assert model.opset_import[0].version == 17
    ops = {node.op_type for node in model.graph.node}
    assert "ScaleAndTranslate" not in ops and "Conv" in ops  # the resize stays outside; a real network inside
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [96, 96, 3]


def test_onnx_errors(hymenoptera_result, tmp_path):
    from tl_keras.export.onnx import export_onnx

    with pytest.raises(ValueError, match=r"must be a file ending in \.onnx"):
        export_onnx(hymenoptera_result.export_dir, str(tmp_path / "model.pb"))
    with pytest.raises(ValueError, match="No SavedModel found"):
        export_onnx(str(tmp_path), str(tmp_path / "m.onnx"))
    assert not os.path.exists(tmp_path / "m.onnx")
