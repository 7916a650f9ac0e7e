"""Progress lines on stderr while listing, checking, decoding and computing caches: counts and rate
on a terminal, nothing otherwise or with --quiet."""

import io
import os
import sys

from conftest import HYMENOPTERA, asset

from tl_keras.utils.progress import Progress, quiet


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_counts_and_a_rate_and_a_pipe_sees_nothing(monkeypatch):
    monkeypatch.delenv("TL_KERAS_QUIET", raising=False)
    shown, piped = Terminal(), io.StringIO()
    for stream in (shown, piped):
        with Progress("decoding images", 4, stream=stream, interval=0) as bar:
            for _ in range(4):
                bar.advance()
    assert "decoding images: 4/4 (" in shown.getvalue() and shown.getvalue().endswith("/s)\n")
    assert piped.getvalue() == ""
    quiet()
    try:
        silenced = Terminal()
        with Progress("decoding images", 1, stream=silenced) as bar:
            bar.advance()
        assert silenced.getvalue() == ""
    finally:
        quiet(False)


def test_loading_a_real_folder_reports_listing_and_decoding(monkeypatch):
    from tl_keras.data.folder import load_image_folder

    monkeypatch.delenv("TL_KERAS_QUIET", raising=False)
    monkeypatch.setattr(sys, "stderr", Terminal())
    folder = load_image_folder(asset(HYMENOPTERA), image_size=32)
    out = sys.stderr.getvalue()
    assert f"listing {os.path.join(asset(HYMENOPTERA), 'train')}: " in out
    for n in (len(folder.train), len(folder.val)):  # every file of each split, counted to the end
        assert f"checking and decoding images: {n}/{n} (" in out
