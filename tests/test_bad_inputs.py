"""A corpus of bad inputs, generated here (nothing binary is committed): each is a reported skip, a
warning on a used image, or a clear error naming the path and the fix; used + skipped == found."""

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tl_keras.data.folder import load_image_folder
from tl_keras.images.quality import MAX_PIXELS


def _photo(seed, size=(40, 48)):
    """A smooth, photo-like RGB image (hundreds of colours) as uint8 (height, width, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    base = np.stack([x * 5 + y, y * 4 + 30, (x + y) * 3], -1) + rng.integers(0, 40, (*size, 3))
    return np.clip(base + seed * 7, 0, 255).astype(np.uint8)


def _jpeg(array, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=92, **kwargs)
    return buffer.getvalue()


def _encoded(array, kind, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, kind, **kwargs)
    return buffer.getvalue()


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _huge_png_header(width, height):
    """A PNG that declares width x height but holds almost nothing: a decompression-bomb shape."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _exif_rotated_jpeg(array):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    return _jpeg(array, exif=exif.tobytes())


def _animated_gif():
    frames = [Image.fromarray(_photo(s)).convert("P") for s in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


# name -> (bytes, expected: "used", "warned" or the start of the skip reason)
def _corpus():
    photo = _photo(0)
    jpeg = _jpeg(photo)
    cmyk = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(cmyk, "JPEG")
    return {
        "zero_bytes.jpg": (b"", "empty file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "cannot be decoded"),
        "text_renamed.jpg": (b"these are not the pixels you are looking for\n" * 20, "cannot be decoded"),
        "png_named.jpg": (_png(Image.fromarray(_photo(1))), "used"),
        "cmyk.jpg": (cmyk.getvalue(), "used"),
        "sixteen_bit.png": (tf.io.encode_png((_photo(2).astype(np.uint16) * 257)).numpy(), "used"),
        "rgba.png": (_png(Image.fromarray(np.dstack([_photo(3), np.full((40, 48), 128, np.uint8)]))), "used"),
        "grayscale.jpg": (_jpeg(_photo(4)[..., 0]), "used"),
        "animated.gif": (_animated_gif(), "used"),
        "palette.png": (_png(Image.fromarray(_photo(5)).convert("P", palette=Image.Palette.ADAPTIVE, colors=200)), "used"),
        "one_pixel.png": (_png(Image.new("RGB", (1, 1), (200, 10, 10))), "too small"),
        "exif_rotated.jpg": (_exif_rotated_jpeg(_photo(6)), "used"),  # turned upright (next test)
        "bomb.png": (_huge_png_header(20000, 20000), "too large"),
        "photo.webp": (_encoded(_photo(7), "WEBP", lossless=True), "used"),
        "webp_named.jpg": (_encoded(_photo(8), "WEBP"), "used"),  # the content decides, not the name
        "scan.tif": (_encoded(_photo(9), "TIFF"), "used"),  # through Pillow
        "tiff_no_extension": (_encoded(_photo(11), "TIFF"), "used"),
        "dangling.jpg": (None, "broken symbolic link: its target"),  # a symlink to a deleted file
        "notes.txt": (b"labelled by Sam", "not an image file type"),
        "Thumbs.db": (b"\0" * 64, "not an image file type"),
        ".DS_Store": (b"\0\0\0\1Bud1", "hidden file"),
        ".hidden.jpg": (jpeg, "hidden file"),
    }


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    corpus = _corpus()
    for name, (blob, _) in corpus.items():
        os.makedirs(root / "train" / "fourmis rouges", exist_ok=True)
        if blob is None:
            os.symlink(root / "deleted.jpg", root / "train" / "fourmis rouges" / name)
            continue
        with open(root / "train" / "fourmis rouges" / name, "wb") as f:
            f.write(blob)
    # The other class, with a unicode name with spaces, and good photos in both classes and splits.
    for split, count in (("train", 6), ("val", 3)):
        for cls in ("fourmis rouges", "abeilles été"):
            os.makedirs(root / split / cls, exist_ok=True)
            for i in range(count):
                with open(root / split / cls / f"photo_{i}.jpg", "wb") as f:
                    f.write(_jpeg(_photo(10 + i + (50 if cls.startswith("a") else 0))))
    return root, corpus


def test_every_bad_file_is_used_warned_or_skipped_as_decided(corpus_folder):
    root, corpus = corpus_folder
    folder = load_image_folder(str(root), image_size=32)
    assert folder.class_names == ["abeilles été", "fourmis rouges"]
    skipped = {os.path.basename(p): reason for p, reason in folder.skipped}
    warned = {os.path.basename(p): message for p, message in folder.warnings}
    used = {os.path.basename(p) for split in folder.splits.values() for p in split.paths
            if "fourmis" in p and "photo_" not in p}
    for name, (_, expected) in corpus.items():
        if expected == "used":
            assert name in used and name not in skipped, name
        elif expected == "warned":
            assert name in used and name in warned, name
        else:
            assert skipped.get(name, "").startswith(expected), (name, skipped.get(name))
    assert "20000x20000" in skipped["bomb.png"] and "downscale" in skipped["bomb.png"]
    assert "1x1" in skipped["one_pixel.png"]
    assert folder.num_used + len(folder.skipped) == folder.num_found == len(corpus) + 18
    # Decoded content is right: the PNG-named-.jpg and the 16-bit PNG are the photos they hold, each
    # framed as its centred 40x40 square (the photos are 40x48).
    index = {os.path.basename(p): i for i, p in enumerate(folder.train.paths)}
    sixteen = folder.train.images[index["sixteen_bit.png"]].astype(int)
    expected16 = tf.image.resize(_photo(2)[:, 4:44], (32, 32), antialias=True).numpy().round().astype(int)
    assert np.abs(sixteen - expected16).max() <= 1
    for name, seed in (("photo.webp", 7), ("scan.tif", 9), ("tiff_no_extension", 11)):  # lossless: exact
        expected = tf.image.resize(_photo(seed)[:, 4:44], (32, 32), antialias=True).numpy().round().astype(int)
        assert np.abs(folder.train.images[index[name]].astype(int) - expected).max() <= 1, name


def test_streamed_tiff_and_webp_decode_as_held_in_memory(corpus_folder):
    """Past the memory limit, files are decoded each epoch in the tf.data pipeline: TIFF included."""
    root, _ = corpus_folder
    held = load_image_folder(str(root), image_size=32)
    streamed = load_image_folder(str(root), image_size=32, memory_limit=0)
    assert streamed.train.images is None and streamed.train.paths == held.train.paths
    pixels = np.concatenate([x.numpy() for x, _ in streamed.dataset("train", batch_size=8)])
    np.testing.assert_array_equal(pixels, held.train.images.astype("float32"))


def test_a_very_large_photo_is_decoded_and_used(tmp_path):
    root = tmp_path / "data"
    for cls in ("a", "b"):
        os.makedirs(root / cls)
        for i in range(3):
            with open(root / cls / f"{i}.jpg", "wb") as f:
                f.write(_jpeg(_photo(i + (9 if cls == "b" else 0))))
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[::2] = 120
    with open(root / "a" / "big.jpg", "wb") as f:
        f.write(tf.io.encode_jpeg(big, quality=50).numpy())
    assert 8000 * 8000 < MAX_PIXELS
    folder = load_image_folder(str(root), image_size=32, validation_split=0.34)
    assert not folder.skipped and folder.num_used == 7


@pytest.mark.parametrize("layout, message", [
    ("empty_class", r"Class 'dogs' has no usable image in .*dogs'.*add images or remove the folder"),
    ("single_class", r"must hold one subfolder per class, at least 2 classes. Received: 1 \(cats\)"),
    ("val_differs", r"The classes of .*val' \(cats, wolves\) differ from those of .*train' \(cats, dogs\)"),
    ("only_junk", r"Class 'dogs' has no usable image .*\(1 skipped\)"),
])
def test_structural_problems_are_errors_naming_the_folder_and_the_fix(tmp_path, layout, message):
    root = tmp_path / "data"
    train = root / "train" if layout == "val_differs" else root
    os.makedirs(train / "cats")
    for i in range(3):
        with open(train / "cats" / f"{i}.jpg", "wb") as f:
            f.write(_jpeg(_photo(i)))
    if layout != "single_class":
        os.makedirs(train / "dogs")
    if layout == "only_junk":
        with open(train / "dogs" / "broken.jpg", "wb") as f:
            f.write(b"junk")
    if layout == "val_differs":
        for cls in ("cats", "wolves"):
            os.makedirs(root / "val" / cls)
        with open(train / "dogs" / "0.jpg", "wb") as f:
            f.write(_jpeg(_photo(7)))
    with pytest.raises(ValueError, match=message):
        load_image_folder(str(root), image_size=32)


def test_train_cli_lists_every_skip_and_unicode_classes_survive_export_and_predict(corpus_folder, tmp_path, tiny_hub,
                                                                                    capsys):
    from tl_keras.cli.commands import main

    root, corpus = corpus_folder
    metrics_path, out = tmp_path / "m.json", tmp_path / "export"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert main(["train", str(root), "--backbone", tiny_hub, "--image-size", "32", "--head-epochs", "2",
                 "--fine-tune-epochs", "1", "--output", str(out), "--metrics-json", str(metrics_path)]) == 0
    summary = capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())
    expected_skips = {n for n, (_, outcome) in corpus.items() if outcome not in ("used", "warned")}
    assert {os.path.basename(s["path"]) for s in metrics["skipped_files"]} == expected_skips
    for name in expected_skips:
        assert name in summary  # the summary names each skipped file
    assert metrics["num_train_images"] + metrics["num_val_images"] + len(metrics["skipped_files"]) == metrics["num_files_found"]
    labels = open(os.path.join(metrics["export_dir"], "assets", "labels.txt"), encoding="utf-8").read().splitlines()
    assert labels == ["abeilles été", "fourmis rouges"]
    photo = root / "val" / "abeilles été" / "photo_0.jpg"
    proc = subprocess.run([sys.executable, "-m", "tl_keras.cli", "predict", str(out), str(photo), "--json"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)[0]["label"] in labels


def test_without_pillow_tiff_is_skipped_with_how_to_enable_it(corpus_folder, monkeypatch):
    from tl_keras.images import sniff

    monkeypatch.setattr(sniff, "pillow_missing", lambda: True)
    root, _ = corpus_folder
    skipped = {os.path.basename(p): reason for p, reason in load_image_folder(str(root), image_size=32).skipped}
    for name in ("scan.tif", "tiff_no_extension"):
        assert "TIFF" in skipped[name] and "pip install pillow" in skipped[name], skipped.get(name)
    assert "photo.webp" not in skipped


def test_special_files_and_junk_folders_are_never_opened_or_read(tmp_path):
    """A FIFO named a_fifo.jpg (opening it would wait for a writer forever), a socket, a folder named
    like an image, a notebook's .ipynb_checkpoints/ and the OS's __MACOSX/ beside real photos: each is
    skipped with its reason, nothing hangs, and used + skipped == found."""
    import shutil
    import signal
    import socket

    from conftest import HYMENOPTERA, asset

    from tl_keras.images.read import expand_image_paths, read_images

    root = tmp_path / "photos"
    for cls in ("ants", "bees"):
        (root / cls).mkdir(parents=True)
        for name in sorted(os.listdir(os.path.join(asset(HYMENOPTERA), "train", cls)))[:4]:
            shutil.copy(os.path.join(asset(HYMENOPTERA), "train", cls, name), root / cls / name)
    photo = next((root / "ants").iterdir())
    os.mkfifo(root / "ants" / "a_fifo.jpg")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(root / "bees" / "a_socket.jpg"))
    for junk in ("ants/.ipynb_checkpoints", "ants/__MACOSX", "bees/holiday.jpg", "__MACOSX"):
        (root / junk).mkdir()
        shutil.copy(photo, root / junk / "copy-checkpoint.jpg")

    def hung(*_):
        raise TimeoutError("reading the folder hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        folder = load_image_folder(str(root), image_size=32, validation_split=0.5)
        paths, skipped_paths = expand_image_paths([str(root)])
        with pytest.raises(ValueError, match="named pipe"):
            read_images([str(root / "ants" / "a_fifo.jpg")])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        unix.close()
    assert folder.class_names == ["ants", "bees"]  # __MACOSX at the top is no class
    skipped = {os.path.relpath(p, root): reason for p, reason in folder.skipped}
    assert "named pipe (FIFO)" in skipped["ants/a_fifo.jpg"] and "socket" in skipped["bees/a_socket.jpg"]
    assert "notebooks or the operating system" in skipped["ants/.ipynb_checkpoints"]
    assert "notebooks or the operating system" in skipped["ants/__MACOSX"]
    assert "named like an image" in skipped["bees/holiday.jpg"]
    assert len(skipped) == 5 and folder.num_used == 8 and folder.num_used + len(folder.skipped) == folder.num_found
    assert not any("checkpoint" in p for split in folder.splits.values() for p in split.paths)
    assert len(paths) == 8 and not any("checkpoint" in p or "fifo" in p or "socket" in p for p in paths)
    assert {os.path.basename(p) for p, _ in skipped_paths} == {"a_fifo.jpg", "a_socket.jpg"}


def test_a_phone_photo_is_turned_upright_by_its_exif_tag_wherever_it_is_decoded(tmp_path):
    """A real photo stored sideways with EXIF orientation 6, as phones write it: the loaders (held in
    memory and streamed), predict's file reading and the CLI flag turn it upright as a viewer does
    (Pillow's exif_transpose is the reference); --no-exif-orientation keeps the stored pixels."""
    from conftest import HYMENOPTERA, asset
    from PIL import ImageOps

    from tl_keras.cli.parser import build_parser
    from tl_keras.config import TrainConfig
    from tl_keras.images.read import read_images

    source = os.path.join(asset(HYMENOPTERA), "train", "bees")
    upright = [Image.open(os.path.join(source, name)).convert("RGB")
               for name in sorted(os.listdir(source))[:3]]
    root = tmp_path / "phone"
    for cls in ("sideways", "plain"):
        (root / cls).mkdir(parents=True)
    for i, photo in enumerate(upright):
        stored = photo.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote; tag 6 turns it back
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(root / "sideways" / f"{i}.jpg", quality=95, exif=exif.tobytes())
        photo.save(root / "plain" / f"{i}.jpg", quality=95)
    path = str(root / "sideways" / "0.jpg")
    reference = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB").resize((64, 64)), np.float32)
    as_stored = np.asarray(Image.open(path).convert("RGB").resize((64, 64)), np.float32)

    def close(image, target):  # mean absolute difference per pixel, 0-255
        return float(np.abs(np.asarray(image, np.float32) - target).mean())

    held = load_image_folder(str(root), image_size=64, validation_split=0.5, crop_to_aspect_ratio=False)
    streamed = load_image_folder(str(root), image_size=64, validation_split=0.5, crop_to_aspect_ratio=False, memory_limit=0)
    kept = load_image_folder(str(root), image_size=64, validation_split=0.5, crop_to_aspect_ratio=False, exif_orientation=False)
    assert streamed.train.images is None and not held.warnings
    assert "not applied" in dict(kept.warnings)[path]
    for folder, target in ((held, reference), (streamed, reference), (kept, as_stored)):
        split = next(s for s in folder.splits.values() if path in s.paths)
        images = np.concatenate([x.numpy() for x, _ in folder.dataset(
            "train" if split is folder.train else "val", batch_size=8)])
        image = images[split.paths.index(path)]
        assert close(image, target) < 12 < close(image, reference if target is as_stored else as_stored)
        trained = np.concatenate([x.numpy() for x, _ in folder.dataset(  # the training pipeline, unaugmented
            "train" if split is folder.train else "val", batch_size=8, training=True, augment="none", shuffle=False)])
        np.testing.assert_allclose(trained[split.paths.index(path)], image, atol=1e-3)
    assert close(read_images([path], 64, crop_to_aspect_ratio=False)[0], reference) < 12
    assert close(read_images([path], 64, crop_to_aspect_ratio=False, exif_orientation=False)[0], as_stored) < 12
    args = build_parser().parse_args(["train", str(root), "--no-exif-orientation"])
    assert TrainConfig().exif_orientation and args.exif_orientation is False


@pytest.mark.parametrize("kind", ["HEIC", "AVIF"])
def test_heic_and_avif_photos_are_read_or_skipped_naming_the_extra(tmp_path, kind, monkeypatch):
    """A real photo saved as HEIC (the iPhone's default, through pillow-heif) and as AVIF (Pillow):
    used, held in memory and streamed alike, close to the JPEG they were made from; without the
    reader, skipped with a reason that names what to install."""
    import pillow_heif
    from conftest import HYMENOPTERA, asset

    from tl_keras.images import sniff

    pillow_heif.register_heif_opener()
    source = os.path.join(asset(HYMENOPTERA), "train", "ants")
    root = tmp_path / "phone"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    names = sorted(os.listdir(source))[:4]
    for i, name in enumerate(names):
        photo = Image.open(os.path.join(source, name)).convert("RGB")
        photo.save(root / ("a" if i % 2 else "b") / f"{i}.jpg", quality=95)
    photo = Image.open(os.path.join(source, names[0])).convert("RGB")
    photo.save(root / "b" / f"phone.{kind.lower()}", format={"HEIC": "HEIF"}.get(kind, kind), quality=90)
    path = str(root / "b" / f"phone.{kind.lower()}")
    assert sniff.image_format(open(path, "rb").read(16)) == kind
    reference = np.asarray(photo.resize((48, 48)), np.float32)
    held = load_image_folder(str(root), image_size=48, validation_split=0.5, crop_to_aspect_ratio=False)
    streamed = load_image_folder(str(root), image_size=48, validation_split=0.5, crop_to_aspect_ratio=False, memory_limit=0)
    assert path not in dict(held.skipped) and held.num_used == 5
    for folder in (held, streamed):
        name, split = next((n, s) for n, s in folder.splits.items() if path in s.paths)
        images = np.concatenate([x.numpy() for x, _ in folder.dataset(name, batch_size=8)])
        assert np.abs(images[split.paths.index(path)] - reference).mean() < 8  # lossy codecs, the same photo
    missing = "pillow_heif" if kind == "HEIC" else "avif"
    real = sniff.importlib.util.find_spec
    if kind == "HEIC":
        monkeypatch.setattr(sniff.importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
        expected = 'tl_keras[heif]'
    else:
        from PIL import features

        monkeypatch.setattr(features, "check", lambda name: False if name == "avif" else True)
        expected = "pip install -U pillow"
    skipped = dict(load_image_folder(str(root), image_size=48, validation_split=0.5).skipped)
    assert expected in skipped[path] and kind in skipped[path]


def test_a_108_megapixel_phone_photo_is_decoded_reduced(tmp_path):
    """A real photo at 12000x9000 (108 MP, over the 100 MP a full decode may take): decoded by the JPEG
    decoder at half size, then framed and resized as any photo, in the loaders and in predict's file
    reading; the same size as a PNG is a decompression risk and is skipped, saying so."""
    from conftest import HYMENOPTERA, asset

    from tl_keras.images.read import read_images

    photo = Image.open(os.path.join(asset(HYMENOPTERA), "train", "bees", sorted(os.listdir(
        os.path.join(asset(HYMENOPTERA), "train", "bees")))[0])).convert("RGB")
    root = tmp_path / "phone"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            photo.rotate(30 * i + (90 if cls == "b" else 0)).save(root / cls / f"{i}.jpg", quality=90)
    big = root / "a" / "huge.jpg"
    photo.resize((12000, 9000), Image.BILINEAR).save(big, quality=80)
    assert 12000 * 9000 > MAX_PIXELS
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    reference = np.asarray(photo.crop((left, top, left + side, top + side)).resize((32, 32), Image.BILINEAR), np.float32)
    folder = load_image_folder(str(root), image_size=32, validation_split=0.5)
    assert str(big) not in dict(folder.skipped) and folder.num_used == 5
    split = next(s for s in folder.splits.values() if str(big) in s.paths)
    assert np.abs(split.images[split.paths.index(str(big))] - reference).mean() < 10
    assert np.abs(read_images([str(big)], 32)[0] - reference).mean() < 10
    # The eager path (a file on its own, reduction chosen in Python) and the graph path (tf.data,
    # the export's bytes signature) decode it to the same pixels.
    from tl_keras.images.codec import decode_image

    raw = tf.constant(big.read_bytes())
    in_graph = tf.function(lambda contents: decode_image(contents, 32))(raw)
    np.testing.assert_array_equal(decode_image(raw, 32).numpy(), in_graph.numpy())
