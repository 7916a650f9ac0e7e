"""Choose how much of the pretrained network to reuse, from measurements, then check the choice.

    python examples/choose_strategy.py ../shared/assets/datasets/hymenoptera \
        --backbone ../shared/assets/hub/mobilenet_v2_035_224_feature_vector --image-size 96

1. `tl_keras.advise` measures size (images per class) and similarity (linear probes at three depths)
   and picks head-only, cut, top-blocks or fine-tune-all.
2. `tl_keras.lr_find` suggests learning rates for both phases.
3. `tl_keras.train` follows the plan at those rates, and trains the same network from scratch beside it.
"""

import argparse

import tl_keras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10, help="head + fine-tune epochs in all")
    parser.add_argument("--lr-steps", type=int, default=100, help="batches per learning-rate ramp")
    parser.add_argument("--per-class", type=int, default=100, help="images per class and split the advisor probes")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    # 1. Measure and choose.
    advice = tl_keras.advise(args.data_dir, backbone=args.backbone, image_size=args.image_size, per_class=args.per_class)
    print(advice.describe())

    # 2. Learning rates for the plan (phase 2 only matters if the plan fine-tunes).
    options = advice.train_options()
    found = tl_keras.lr_find(args.data_dir, backbone=args.backbone, image_size=args.image_size, cut=options["cut"],
                             unfreeze_blocks=options["unfreeze_blocks"] or None, steps=args.lr_steps)
    rates = found.suggestions
    print(f"suggested learning rates: head {rates['phase 1']:.1e}, fine-tuning {rates['phase 2']:.1e}")

    # 3. Train the plan, and the same architecture from scratch on the same splits and epochs.
    result = tl_keras.train(
        args.data_dir, backbone=args.backbone, image_size=args.image_size, transfer=advice.strategy,
        head_epochs=args.epochs // 2, fine_tune_epochs=args.epochs - args.epochs // 2, **advice.measured_options(),
        learning_rate=rates["phase 1"], fine_tune_learning_rate=rates["phase 2"], compare_scratch=True,
        output=args.output, verbose=0,
    )
    scratch = result.metrics["scratch"]
    print(f"{advice.strategy}: val accuracy {result.metrics['val_accuracy']:.3f}; "
          f"from scratch: {scratch['val_accuracy']:.3f} ({scratch['epochs']} epochs)")
    print(f"exported to {result.export_dir}")


if __name__ == "__main__":
    main()
