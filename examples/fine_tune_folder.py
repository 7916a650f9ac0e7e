"""Fine-tune a pretrained backbone on an image folder and export it for serving.

    python examples/fine_tune_folder.py ../shared/assets/datasets/hymenoptera \
        --backbone ../shared/assets/hub/mobilenet_v2_035_224_feature_vector --image-size 96

With internet, `--backbone mobilenet_v2` (the default) fetches the TF Hub feature vector.
"""

import argparse

import tl_keras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--output", default=None)
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    args = parser.parse_args()

    # 1. One call: folder -> backbone + head -> frozen phase -> top blocks at lr/10 -> export.
    result = tl_keras.train(
        args.data_dir, backbone=args.backbone, image_size=args.image_size,
        head_epochs=args.head_epochs, fine_tune_epochs=args.fine_tune_epochs, output=args.output,
    )
    print(f"val accuracy after the head phase {result.metrics['head_val_accuracy']:.3f}, "
          f"after fine-tuning {result.metrics['val_accuracy']:.3f}")
    print(f"blocks fine-tuned: {', '.join(result.history.unfrozen_blocks)}")

    # 2. Serve the export: plain TensorFlow would do too (tf.saved_model.load).
    served = tl_keras.ExportedModel(result.export_dir)
    first_val_image = result.data.val.paths[0]
    print(served.predict_files([first_val_image], top_k=2)[0])


if __name__ == "__main__":
    main()
