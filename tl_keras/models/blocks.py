"""Blocks: how a backbone's layers or variables group into the units phase 2 unfreezes.

Names are grouped by the first block pattern they match (MobileNetV2's `block_16_*`, ResNet's
`conv5_block3_*`, Keras-Hub's `stack3_block2_*`, ...); what comes before the first block is the
`stem`, what comes after the last joins it (MobileNetV2's `Conv_1`). `BlockSelection` is the block
API both backbone layers share (`block_names`, `set_trainable_blocks`), and `resolve_cut` names the
layer a cut at a block keeps last. No TensorFlow here.

Examples:
    >>> [name for name, _ in group_blocks(["Conv1", "block_1_expand", "block_2_add", "Conv_1"])]
    ['stem', 'block_1', 'block_2']
"""

from __future__ import annotations

import re
from typing import Sequence

from tl_keras.config import parse_unfreeze_blocks

# Layer/variable-name patterns that identify a block. The first capture group is the block's name.
MOBILENET_BLOCKS = (r"(?:^|/)(block_\d+)_",)
RESNET_BLOCKS = (
    r"(?:^|/)(conv\d+_block\d+)_",  # keras.applications ResNet50: conv5_block3_2_conv
    r"(block\d+/unit_\d+)/",  # TF-slim exports on TF Hub: resnet_v2_50/block4/unit_3/...
)
# Tried, in order, for modules the registry does not know.
GENERIC_BLOCKS = MOBILENET_BLOCKS + RESNET_BLOCKS + (r"(?:^|/)(block\d+[a-z]?)_", r"(?:^|/)(stage\d+)[_/]")
# Keras-Hub backbones: ResNet `stack1_block2_...`, MobileNet(V3) `block_2_0_...`, EfficientNet `block2a_`.
KERAS_HUB_BLOCKS = (r"(?:^|/)(stack\d+_block\d+)_", r"(?:^|/)(block_\d+_\d+)_", r"(?:^|/)(block\d+[a-z])_") + GENERIC_BLOCKS


def group_blocks(names: Sequence[str], patterns: Sequence[str] = GENERIC_BLOCKS) -> list[tuple[str, list[int]]]:
    """Groups layer or variable names into blocks, in network order.

    A name matching a pattern belongs to the block the pattern's first group names. A name matching
    none belongs to the block before it (so `Conv_1` after `block_16_*` joins `block_16`), or, before
    the first block, to a `"stem"` block. If no name matches any pattern, each distinct top-level
    name scope (text before the first `/`) is its own block: the documented fallback for unknown
    modules (after a model-name prefix that every name shares). Order is the order of first appearance, which follows depth for Keras-made models.

    Returns:
        A list of `(block_name, indices_into_names)`, bottom block first.

    >>> group_blocks(["Conv1/kernel", "block_1_expand/kernel", "block_2_project/kernel", "Conv_1/kernel"])
    [('stem', [0]), ('block_1', [1]), ('block_2', [2, 3])]
    """
    compiled = [re.compile(p) for p in patterns]
    keys: list[str | None] = []
    for name in names:
        key = None
        for regex in compiled:
            match = regex.search(name)
            if match:
                key = match.group(1)
                break
        keys.append(key)
    if names and all(k is None for k in keys):
        parts = [n.split(":")[0].split("/") for n in names]
        # Drop a model-name prefix every variable shares (`my_model/dense/kernel`).
        depth = 1 if len({p[0] for p in parts}) == 1 and all(len(p) > 2 for p in parts) else 0
        keys = [p[depth] for p in parts]
    blocks: list[tuple[str, list[int]]] = []
    index: dict[str, int] = {}
    current = "stem"
    for i, key in enumerate(keys):
        current = key or current
        if current not in index:
            index[current] = len(blocks)
            blocks.append((current, []))
        blocks[index[current]][1].append(i)
    return blocks


def resolve_cut(layer_names: Sequence[str], cut: str, patterns: Sequence[str] = GENERIC_BLOCKS) -> str:
    """The layer whose output a backbone cut at `cut` ends with.

    `cut` is a block name (`"block_12"`: the block's last layer, e.g. `block_12_add`) or an exact
    layer name (`"block_12_project_BN"`).

    >>> resolve_cut(["Conv1", "block_1_expand", "block_1_project", "block_2_expand", "block_2_add"], "block_1")
    'block_1_project'
    """
    if cut in layer_names:
        return cut
    for name, indices in group_blocks(layer_names, patterns):
        if name == cut:
            return layer_names[indices[-1]]
    blocks = [name for name, _ in group_blocks(layer_names, patterns)]
    raise ValueError(
        f"Cannot cut the backbone at {cut!r}: no block or layer has that name. Blocks, bottom first: "
        f"{', '.join(blocks)} (or pass an exact layer name, e.g. {layer_names[len(layer_names) // 2]!r})."
    )


class BlockSelection:
    """The block API both backbone layers share: `block_names`, `unfrozen_blocks`, and the choice
    of the top blocks behind `set_trainable_blocks`. Subclasses set `self.blocks` (from
    `group_blocks`) and apply the choice to their own variables or layers."""

    blocks: list[tuple[str, list[int]]]
    _unfrozen: int = 0
    inference_mode: bool = False
    # Normalise with batch statistics even when Keras runs in inference mode (evaluate, predict):
    # for a network trained from scratch whose BatchNormalization moving averages have not settled.
    batch_statistics: bool = False

    def _batch_norm_training(self, training) -> bool:
        """The `training` value the wrapped network is called with."""
        return (bool(training) or self.batch_statistics) and not self.inference_mode

    @property
    def block_names(self) -> list[str]:
        """Block names, bottom first (e.g. `['stem', 'block_1', ..., 'block_16']`)."""
        return [name for name, _ in self.blocks]

    @property
    def unfrozen_blocks(self) -> int:
        """How many top blocks are trainable (0 when the layer is frozen)."""
        return self._unfrozen if getattr(self, "trainable", True) else 0

    def block_weights(self) -> list[tuple[str, list]]:
        """`(block name, its weights)` for every block, bottom first."""
        return [(name, self._weights_of(indices)) for name, indices in self.blocks]

    def block_config(self) -> dict:
        """The block settings `get_config` records (one place for both backbone kinds)."""
        return {"block_patterns": list(self.block_patterns), "inference_mode": self.inference_mode,
                "cut": self.cut, "unfrozen_blocks": self.unfrozen_blocks}

    @classmethod
    def from_block_config(cls, config: dict, **extra):
        """Rebuilds a layer from `get_config` output and unfreezes the recorded top blocks (none when
        the key is missing: a backbone starts frozen)."""
        config = dict(config)
        unfrozen = config.pop("unfrozen_blocks", 0)
        layer = cls(**config, **extra)
        layer.set_trainable_blocks(unfrozen)
        return layer

    def _weights_of(self, indices: list[int]) -> list:  # pragma: no cover - subclasses implement it
        raise NotImplementedError

    def _select_top_blocks(self, num_blocks: int | str | None) -> tuple[list[str], set[int]]:
        """Validates `num_blocks` (int, 'all'; None = all) and returns the chosen top blocks' names
        (bottom first) and the indices they cover. Records the count for `unfrozen_blocks`."""
        num_blocks = parse_unfreeze_blocks(num_blocks)
        total = len(self.blocks)
        n = total if num_blocks in ("all", None) else min(num_blocks, total)
        chosen = self.blocks[total - n:] if n else []
        self._unfrozen = n
        return [name for name, _ in chosen], {i for _, indices in chosen for i in indices}
