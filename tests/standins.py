"""Faithful stand-ins for TF Hub modules no offline machine can download, with random weights.

`save_resnet_v2_50` writes a TF2 SavedModel shaped like TF Hub's
`google/imagenet/resnet_v2_50/feature_vector/5` (TF-slim ResNet v2 50): the same architecture and
variable names (`resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/weights`, `.../conv1/BatchNorm/gamma`,
`.../preact/...`, `.../shortcut/biases`, `resnet_v2_50/postnorm/...`), the same input contract
(float32 images `[batch, height, width, 3]` in [0, 1], any size) and output (`[batch, 2048]` after
global average pooling), and the reusable-SavedModel API: `__call__(images, training=False)` traced
for both values of `training` (batch statistics, moving averages updated, when True), `variables`,
`trainable_variables`, `regularization_losses`.
"""

import numpy as np
import tensorflow as tf

BLOCKS = ((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1))  # (base depth, units, stride of the last unit)
EPSILON, DECAY = 1.001e-5, 0.997


class ResNetV2Fifty(tf.Module):
    def __init__(self, seed: int = 0):
        super().__init__(name=None)
        self._rng = np.random.default_rng(seed)
        self.all_variables = []
        self.conv1 = self._conv("conv1", 7, 3, 64, bias=True)
        self.units = []
        depth_in = 64
        for b, (base, units, stride) in enumerate(BLOCKS, start=1):
            for u in range(1, units + 1):
                scope = f"block{b}/unit_{u}/bottleneck_v2"
                depth = base * 4
                unit = {
                    "scope": scope, "stride": stride if u == units else 1,
                    "preact": self._bn(f"{scope}/preact", depth_in),
                    "shortcut": self._conv(f"{scope}/shortcut", 1, depth_in, depth, bias=True) if depth != depth_in else None,
                    "conv1": self._conv(f"{scope}/conv1", 1, depth_in, base), "bn1": self._bn(f"{scope}/conv1/BatchNorm", base),
                    "conv2": self._conv(f"{scope}/conv2", 3, base, base), "bn2": self._bn(f"{scope}/conv2/BatchNorm", base),
                    "conv3": self._conv(f"{scope}/conv3", 1, base, depth, bias=True, gain=0.2),
                }
                self.units.append(unit)
                depth_in = depth
        self.postnorm = self._bn("postnorm", 2048)

    def _variable(self, name, value, trainable=True):
        variable = tf.Variable(value.astype("float32"), name=f"resnet_v2_50/{name}", trainable=trainable)
        self.all_variables.append(variable)
        return variable

    def _conv(self, scope, size, channels_in, channels_out, bias=False, gain=1.0):
        fan_in = size * size * channels_in
        weights = self._variable(f"{scope}/weights", self._rng.normal(0, gain * np.sqrt(2.0 / fan_in), (size, size, channels_in, channels_out)))
        biases = self._variable(f"{scope}/biases", np.zeros(channels_out)) if bias else None
        return weights, biases

    def _bn(self, scope, channels):
        return {
            "gamma": self._variable(f"{scope}/gamma", np.ones(channels)),
            "beta": self._variable(f"{scope}/beta", np.zeros(channels)),
            "moving_mean": self._variable(f"{scope}/moving_mean", np.zeros(channels), trainable=False),
            "moving_variance": self._variable(f"{scope}/moving_variance", np.ones(channels), trainable=False),
        }

    @staticmethod
    def _apply_conv(x, conv, stride=1):
        weights, biases = conv
        size = int(weights.shape[0])
        if stride > 1 and size > 1:  # TF-slim's conv2d_same: explicit padding, then VALID
            pad = size - 1
            x = tf.pad(x, [[0, 0], [pad // 2, pad - pad // 2], [pad // 2, pad - pad // 2], [0, 0]])
            y = tf.nn.conv2d(x, weights, stride, "VALID")
        else:
            y = tf.nn.conv2d(x, weights, stride, "SAME")
        return y + biases if biases is not None else y

    @staticmethod
    def _apply_bn(x, bn, training):
        if training:
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            bn["moving_mean"].assign(DECAY * bn["moving_mean"] + (1 - DECAY) * mean)
            bn["moving_variance"].assign(DECAY * bn["moving_variance"] + (1 - DECAY) * variance)
        else:
            mean, variance = bn["moving_mean"], bn["moving_variance"]
        return tf.nn.relu(tf.nn.batch_normalization(x, mean, variance, bn["beta"], bn["gamma"], EPSILON))

    def forward(self, images, training):
        with tf.name_scope("resnet_v2_50/conv1"):  # op names carry the slim scopes, as the module's do
            x = self._apply_conv(images, self.conv1, stride=2)
        with tf.name_scope("resnet_v2_50/pool1"):
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for unit in self.units:
            with tf.name_scope(f"resnet_v2_50/{unit['scope']}"):
                preact = self._apply_bn(x, unit["preact"], training)
                stride = unit["stride"]
                if unit["shortcut"] is not None:
                    shortcut = self._apply_conv(preact, unit["shortcut"], stride)
                else:
                    shortcut = x[:, ::stride, ::stride, :] if stride > 1 else x
                r = self._apply_bn(self._apply_conv(preact, unit["conv1"]), unit["bn1"], training)
                r = self._apply_bn(self._apply_conv(r, unit["conv2"], stride), unit["bn2"], training)
                x = tf.add(shortcut, self._apply_conv(r, unit["conv3"]), name="add")
        with tf.name_scope("resnet_v2_50/postnorm"):
            x = self._apply_bn(x, self.postnorm, training)
        return tf.reduce_mean(x, axis=[1, 2], name="resnet_v2_50/pool5")


def save_resnet_v2_50(path: str, seed: int = 0) -> str:
    """Writes the stand-in to `path` (a SavedModel folder) and returns `path`."""
    module = ResNetV2Fifty(seed)
    root = tf.train.Checkpoint()
    root.module = module
    root.variables = list(module.all_variables)
    root.trainable_variables = [v for v in module.all_variables if v.trainable]
    root.regularization_losses = []

    @tf.function
    def call(images, training=False):
        return module.forward(images, training)

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    for training in (True, False):
        call.get_concrete_function(spec, training)
    root.__call__ = call
    tf.saved_model.save(root, path)
    return path
