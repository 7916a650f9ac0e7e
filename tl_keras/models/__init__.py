"""Step 2 of the flow: backbone + head.

`registry` (backbone names -> `BackboneSpec`) and `blocks` (how layers group into unfreezable
blocks), neither of which imports TensorFlow; `backbones` (TF Hub / SavedModel, `keras.applications`,
Keras-Hub layers); `classifier` (`ImageClassifier`: resize, pixel range, backbone, dropout, softmax
head); `preamble` (what every entry point runs before it trains or measures)."""
