"""Step 2 of the flow: backbone + head. `registry` (backbone names -> `BackboneSpec`, block
grouping; no TensorFlow), `backbones` (TF Hub / SavedModel, `keras.applications`, Keras-Hub layers),
`classifier` (`ImageClassifier`: resize, pixel range, backbone, dropout, softmax head)."""
