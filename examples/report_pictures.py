"""Train on the flowers photos and write the report pictures the README shows.

    python examples/report_pictures.py ../shared/assets/datasets/flowers \
        --backbone ../shared/assets/hub/mobilenet_v2_035_224_feature_vector --output docs/pictures

Writes curves.png (both phases on one epoch axis), confusion_val.png and misclassified_val.png, and
prints the per-class report.
"""

import argparse
import os
import tempfile

import tl_keras
from tl_keras.evaluation.report import format_report
from tl_keras.evaluation.plots import plot_confusion_matrix, plot_misclassified, plot_training_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--output", default=os.path.join("docs", "pictures"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        result = tl_keras.train(
            args.data_dir, backbone=args.backbone, image_size=args.image_size, head_epochs=args.head_epochs,
            fine_tune_epochs=args.fine_tune_epochs, output=os.path.join(scratch, "model"), verbose=0,
        )
    report = result.metrics["evaluation"]["val"]
    print(format_report(report, f"{args.data_dir} (val)"))
    plot_training_curves(result.history.history, result.history.head_epochs, os.path.join(args.output, "curves.png"))
    plot_confusion_matrix(report, os.path.join(args.output, "confusion_val.png"), title="Confusion matrix (flowers val)")
    # Eight images keep the picture small enough to live in the repository.
    plot_misclassified(report["most_confident_errors"][:8], os.path.join(args.output, "misclassified_val.png"),
                       image_size=args.image_size)
    print(f"pictures written to {args.output}")


if __name__ == "__main__":
    main()
