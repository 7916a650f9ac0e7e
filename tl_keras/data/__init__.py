"""Step 1 of the flow: data sources -> checked samples -> tf.data pipelines.

`folder` (image folders: listing, checks, splits), `label_files` (CSV / DataFrame / rows),
`tfdata` (`tf.data` datasets), `sources` (the one dispatcher: `load_data`), `augment`,
`pipeline` (the training and evaluation pipelines, the epoch record), `samples`.
Images themselves (decode, sniff, frame, quality checks) are `tl_keras.images`'.

Every name `tl_keras.data` had as one module is still importable from here:

>>> from tl_keras.data import load_image_folder, load_data
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "DEFAULT_MEMORY_LIMIT": "tl_keras.data.folder",
    "EPOCH_ATTRIBUTE": "tl_keras.data.epochs",
    "FEW_COLOURS": "tl_keras.images.quality",
    "FORMAT_NAMES": "tl_keras.images.sniff",
    "IMAGE_EXTENSIONS": "tl_keras.images.sniff",
    "ImageFolder": "tl_keras.data.folder",
    "MAX_PIXELS": "tl_keras.images.quality",
    "MIN_SIDE": "tl_keras.images.quality",
    "PREFETCH_BATCHES": "tl_keras.data.pipeline",
    "Sample": "tl_keras.data.samples",
    "Split": "tl_keras.data.samples",
    "VAL_DIR_NAMES": "tl_keras.data.folder",
    "assemble": "tl_keras.data.folder",
    "assemble_in_memory": "tl_keras.data.folder",
    "centre_square": "tl_keras.images.codec",
    "check_images": "tl_keras.data.folder",
    "check_layout": "tl_keras.data.folder",
    "check_source": "tl_keras.data.sources",
    "count_images": "tl_keras.data.sources",
    "declared_size": "tl_keras.images.codec",
    "decode_file": "tl_keras.images.codec",
    "decode_image": "tl_keras.images.codec",
    "decode_streamed": "tl_keras.images.codec",
    "epoch_indices": "tl_keras.data.epochs",
    "epoch_variable": "tl_keras.data.epochs",
    "exif_orientation": "tl_keras.images.codec",
    "record_epoch": "tl_keras.data.epochs",
    "expand_image_paths": "tl_keras.images.read",
    "finish": "tl_keras.data.pipeline",
    "has_class": "tl_keras.data.samples",
    "image_format": "tl_keras.images.sniff",
    "load_data": "tl_keras.data.sources",
    "load_image_folder": "tl_keras.data.folder",
    "make_dataset": "tl_keras.data.pipeline",
    "read_images": "tl_keras.images.read",
    "require_fraction": "tl_keras.data.folder",
    "resize_uint8": "tl_keras.images.codec",
    "skip_reason": "tl_keras.images.sniff",
    "source_name": "tl_keras.data.sources",
    "split_arrays": "tl_keras.data.sources",
    "try_read_images": "tl_keras.images.read",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
