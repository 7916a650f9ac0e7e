"""What an image file is and how it becomes pixels: the format its first bytes announce (whatever
its name), decoding (TensorFlow; TIFF through Pillow), the EXIF orientation tag, the size a header
declares, and the one resize every image goes through (files, tf.data elements, serving bytes), with
its framing (`crop_to_aspect_ratio`: the centred square, or the whole image squeezed).

Sniffing a file's format without decoding it is `tl_keras.images.sniff`'s.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import tensorflow as tf

from tl_keras.images import sniff
from tl_keras.images.sniff import image_format


def _decode_pillow(raw: bytes, kind: str, apply_exif: bool) -> np.ndarray:
    """A TIFF's first page, a HEIC or an AVIF as uint8 RGB, through Pillow (HEIC through pillow-heif's
    opener), turned upright by its EXIF orientation unless `apply_exif=False`."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    if kind == "HEIC":
        import pillow_heif

        pillow_heif.register_heif_opener()
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image = ImageOps.exif_transpose(image) if apply_exif else image
            return np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot be decoded as a {kind} image ({err})") from err


def decode_file(raw: bytes, image_size: int | None = None, crop_to_aspect_ratio: bool = True,
                apply_exif: bool = True) -> np.ndarray:
    """Eagerly decodes an image file's bytes as `decode_image` does, TIFF, HEIC and AVIF included
    (through Pillow), turned upright by its EXIF orientation tag unless `apply_exif=False` (then as
    stored).

    Raises:
        ValueError: the bytes are no image tl_keras reads, or a format whose reader is not installed
            (the message names what to install).
    """
    kind = image_format(raw[:16])
    if kind in sniff.PILLOW_FORMATS:
        reason = sniff.unreadable(kind)  # looked up there, so a test can stand in for it
        if reason:
            raise ValueError(reason)
        image = _decode_pillow(raw, kind, apply_exif)
        if image_size is not None:
            image = resize_uint8(image, image_size, crop_to_aspect_ratio).numpy()
        return image
    try:
        image = decode_image(raw, image_size, crop_to_aspect_ratio).numpy()
    except tf.errors.OpError as err:
        raise ValueError(f"cannot be decoded as an image ({_tf_message(err)})") from err
    return orient(image, orientation_of(raw)) if apply_exif else image


def orientation_of(raw: bytes) -> int:
    """The EXIF orientation to apply to a file's decoded pixels: its tag if valid (2-8), else 1."""
    value = exif_orientation(raw)
    return value if value in range(2, 9) else 1


def orient(image, value):
    """`image` (`[h, w, c]`, NumPy or a tensor) turned upright by EXIF orientation `value` (1-8; 1 and
    anything else: as it is), as a viewer shows it. The framing and the resize commute with these
    turns, so they can be applied to the decoded image or to its resized square alike.

    Examples:
        >>> import numpy as np
        >>> stored = np.arange(6).reshape(2, 3, 1)
        >>> orient(stored, 6)[..., 0].tolist()   # stored sideways (tag 6): turned 90 degrees clockwise
        [[3, 0], [4, 1], [5, 2]]
    """
    if isinstance(image, np.ndarray):
        ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
               5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1),
               7: lambda x: np.rot90(x, 2).swapaxes(0, 1), 8: lambda x: np.rot90(x, 1)}
        return np.ascontiguousarray(ops[value](image)) if value in ops else image
    branches = [lambda: image, lambda: image,
                lambda: tf.image.flip_left_right(image), lambda: tf.image.rot90(image, 2),
                lambda: tf.image.flip_up_down(image), lambda: tf.image.transpose(image),
                lambda: tf.image.rot90(image, 3), lambda: tf.image.rot90(tf.image.transpose(image), 2),
                lambda: tf.image.rot90(image, 1)]
    return tf.switch_case(tf.clip_by_value(tf.cast(value, tf.int32), 0, 8), branches)


# A JPEG declaring more pixels than this is decoded reduced (1/2, 1/4 or 1/8 of each side, by the
# JPEG decoder's own scaling, at a fraction of the memory and time) to at most this many pixels; one
# over 64 times this (past what 1/8 brings under it) is a decompression bomb, never decoded.
REDUCE_PIXELS = 100 * 10**6
JPEG_BOMB_PIXELS = 64 * REDUCE_PIXELS
# The decoder's reductions tried before 1/8: ratio r takes up to r * r * REDUCE_PIXELS.
_JPEG_RATIOS = (1, 2, 4)


def decode_image(contents: tf.Tensor, image_size: int | None = None, crop_to_aspect_ratio: bool = True) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP/GIF/WebP/JPEG XL bytes to uint8 RGB in the graph (grayscale and RGBA
    become RGB; a GIF gives its first frame), optionally resized to `image_size` squared as
    `resize_uint8` does. A JPEG over `REDUCE_PIXELS` (a 108-megapixel phone photo) is decoded
    reduced. TIFF, HEIC and AVIF need `decode_file` (eager, through Pillow)."""
    if tf.executing_eagerly():  # a file decoded on its own: the same ops, chosen in Python
        image = _decode_eager(contents.numpy() if isinstance(contents, tf.Tensor) else bytes(contents))
        return image if image_size is None else resize_uint8(image.numpy(), image_size, crop_to_aspect_ratio)
    return _decode_image(contents, image_size, crop_to_aspect_ratio)


def _decode_eager(raw: bytes) -> tf.Tensor:
    """`_decode_image` without a resize, eagerly: one or two ops instead of the graph's fifteen
    (eager ops, one by one, hold the GIL, so a thread pool of decoders barely overlaps)."""
    if raw[:3] == b"\xff\xd8\xff":
        height, width = (int(v) for v in tf.image.extract_jpeg_shape(raw)[:2].numpy())
        pixels = height * width
        ratio = next((r for r in _JPEG_RATIOS if pixels <= r * r * REDUCE_PIXELS), 8)
        return tf.io.decode_jpeg(raw, channels=3, ratio=ratio)
    return tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)


def _decode_image(contents, image_size: int | None, crop_to_aspect_ratio: bool) -> tf.Tensor:
    contents = tf.convert_to_tensor(contents, tf.string)
    is_jpeg = tf.equal(tf.strings.substr(tf.strings.join([contents, b"\0\0\0"]), 0, 3), b"\xff\xd8\xff")
    image = tf.cond(is_jpeg, lambda: _decode_jpeg(contents),
                    lambda: tf.io.decode_image(contents, channels=3, expand_animations=False, dtype=tf.uint8))
    image.set_shape([None, None, 3])
    return image if image_size is None else resize_uint8(image, image_size, crop_to_aspect_ratio)


def _decode_jpeg(contents: tf.Tensor) -> tf.Tensor:
    """A JPEG at full size, or reduced by the decoder's 1/2, 1/4 or 1/8 scaling to at most
    `REDUCE_PIXELS` (the smallest reduction that gets there)."""
    shape = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
    pixels = shape[0] * shape[1]

    def at(ratio: int):
        return lambda: tf.io.decode_jpeg(contents, channels=3, ratio=ratio)

    return tf.case([(pixels <= ratio * ratio * REDUCE_PIXELS, at(ratio)) for ratio in _JPEG_RATIOS],
                    default=at(8), exclusive=False)


def resize_uint8(image, image_size: int, crop_to_aspect_ratio: bool = True) -> tf.Tensor:
    """The one resize every image goes through (files, tf.data elements, serving bytes): with
    `crop_to_aspect_ratio` (the default) the image is first cut to its centred square, the full short
    side (`centre_square`), so shapes keep their proportions; else it is squeezed whole. Then bilinear,
    antialiased, to `image_size` squared, rounded back to uint8."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.dtype == np.uint8 and tf.executing_eagerly():
        # A decoded file: one graph call, not one eager op after another (see `_decode_eager`).
        if crop_to_aspect_ratio:
            image = centre_square(image)
        return _compiled_resize(image, image_size)  # the signature makes the size a tensor: one graph
    return _resize(image, image_size, crop_to_aspect_ratio)


def _resize(image, image_size: int, crop_to_aspect_ratio: bool) -> tf.Tensor:
    if crop_to_aspect_ratio:
        image = centre_square(image)
    resized = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


@tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int32)], autograph=False)
def _compiled_resize(image, image_size):
    """`resize_uint8` of an already framed `[h, w, 3]` uint8 image as one graph for every size."""
    return _resize(image, image_size, False)


def centre_square(image) -> tf.Tensor:
    """The centred square of an image (`[h, w, c]` or `[b, h, w, c]`) whose side is the short side:
    the box `keras.layers.Resizing(crop_to_aspect_ratio=True)` takes, the classifier's `resize` layer,
    so raw images given to a model or its export are framed as the training images were."""
    if isinstance(image, np.ndarray):  # a decoded file: sliced in NumPy (eager TF ops cost ~2 ms an image)
        height, width = image.shape[-3], image.shape[-2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return image[..., top:top + side, left:left + side, :]
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top:top + side, left:left + side, :]


def decode_streamed(contents: tf.Tensor, image_size: int, crop_to_aspect_ratio: bool = True,
                    apply_exif: bool = True) -> tf.Tensor:
    """`decode_image` for input pipelines that read files each epoch: TIFF, HEIC and AVIF (by their
    first bytes) go through Pillow in a `tf.numpy_function`, which serving signatures cannot hold;
    those are turned upright there (`apply_exif`), a JPEG's turn is the pipeline's (`orient`)."""
    head = tf.strings.substr(tf.strings.join([contents, b"\0" * 8]), 0, 8)
    is_pillow = tf.reduce_any([tf.equal(tf.strings.substr(head, 0, 4), b"II*\x00"), tf.equal(tf.strings.substr(head, 0, 4), b"MM\x00*"),
                               tf.equal(tf.strings.substr(head, 4, 4), b"ftyp")])

    def pillow():
        image = tf.numpy_function(lambda raw: decode_file(bytes(raw), image_size, crop_to_aspect_ratio, apply_exif), [contents], tf.uint8)
        image.set_shape([image_size, image_size, 3])
        return image

    return tf.cond(is_pillow, pillow, lambda: decode_image(contents, image_size, crop_to_aspect_ratio))


def _tf_message(err: tf.errors.OpError) -> str:
    """TensorFlow's error text without its `{{function_node ...}}` prefix and `[Op:...]` suffix."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", err.message or type(err).__name__)
    return text.split(" [Op:")[0].strip().splitlines()[0]


def declared_size(contents: bytes) -> tuple[int, int] | None:
    """`(width, height)` from an image's header, without decoding it (None if not recognised)."""
    try:
        if contents[:8] == b"\x89PNG\r\n\x1a\n" and contents[12:16] == b"IHDR":
            return struct.unpack(">II", contents[16:24])
        if contents[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", contents[6:10])
        if contents[:2] == b"BM":
            width, height = struct.unpack("<ii", contents[18:26])
            return abs(width), abs(height)
        if contents[:3] == b"\xff\xd8\xff":
            height, width, _ = tf.image.extract_jpeg_shape(contents).numpy().tolist()
            return width, height
    except (struct.error, tf.errors.OpError):
        return None
    return None


def exif_orientation(contents: bytes) -> int:
    """A JPEG's EXIF orientation tag (1 = upright; 2-8 = mirrored and/or rotated), 1 when absent."""
    if contents[:2] != b"\xff\xd8":
        return 1
    try:
        i = 2
        while i + 4 <= len(contents) and contents[i] == 0xFF:
            marker, length = contents[i + 1], struct.unpack(">H", contents[i + 2:i + 4])[0]
            if marker == 0xDA:  # start of the image data: no more metadata
                return 1
            if marker == 0xE1 and contents[i + 4:i + 10] == b"Exif\0\0":
                tiff = contents[i + 10:i + 2 + length]
                order = "<" if tiff[:2] == b"II" else ">"
                ifd = struct.unpack(order + "I", tiff[4:8])[0]
                for k in range(struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]):
                    entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
                    if struct.unpack(order + "H", entry[:2])[0] == 0x0112:
                        return struct.unpack(order + "H", entry[8:10])[0]
                return 1
            i += 2 + length
    except struct.error:
        return 1
    return 1
