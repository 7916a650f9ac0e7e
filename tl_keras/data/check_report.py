"""The data check as one HTML file a person opens in a browser: the copies of each duplicate group,
label conflict, train/val leak and near-duplicate pair side by side, the likely label errors with
their given and predicted class and the head's confidence, the skipped files with their reasons and
the classes' sizes. Thumbnails are embedded (JPEG, base64), so the file stands alone: mail it, open
it offline.

Needs Pillow for the thumbnails (`pip install "tl_keras[report]"`); imports no TensorFlow.

Examples:
    >>> from tl_keras.data.check import checked_folder
    >>> from tl_keras.data.check_report import write_report
    >>> folder, found = checked_folder(folder)  # doctest: +SKIP
    >>> write_report("check.html", folder, found)  # doctest: +SKIP
    'check.html'
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import os

import numpy as np

from tl_keras.data.check import MIN_PER_CLASS, DataCheck
from tl_keras.data.folder import ImageFolder
from tl_keras.images.pillow import open_reduced

EXTRA = 'pip install "tl_keras[report]"'
THUMBNAIL = 160  # pixels, the longer side
MAX_GROUPS = 200  # per section; the JSON (`--json`, metrics["data_check"]) lists every one

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.group{display:flex;gap:12px;flex-wrap:wrap;padding:8px 0;border-bottom:1px solid #eee}
figure{margin:0;width:170px}figure img{max-width:160px;max-height:160px;display:block}
figcaption{font-size:12px;word-break:break-all}.none{color:#777}
.missing{width:160px;height:60px;background:#eee;font-size:11px;padding:4px;box-sizing:border-box}
table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.more{color:#a40}
"""


def require_pillow() -> None:
    """Fails before any work when Pillow, which draws the thumbnails, is missing."""
    if importlib.util.find_spec("PIL") is None:
        raise ImportError(f"The HTML report needs Pillow for its thumbnails: {EXTRA} (or pip install pillow).")


def write_report(path: str, folder: ImageFolder, check: DataCheck, title: str | None = None) -> str:
    """Writes `check` (of `folder`) to `path` as one self-contained HTML file; returns `path`.

    Args:
        path: the `.html` file to write (its folder is created).
        folder: the data the check ran on (its images are the thumbnails).
        check: what `check_data` / `check_labels` found.
        title: the page's heading. Defaults to the data's root.
    """
    require_pillow()
    pixels = _in_memory(folder)

    def thumb(path: str) -> str:
        return _figure(path, pixels, _where(folder, path), folder.exif_orientation)

    parts = [f"<h1>{_e(title or f'Data check: {folder.root}')}</h1>", _summary(folder, check)]
    parts += _groups("conflicts", "Label conflicts: the same image under different classes", check.conflicts, thumb,
                     lambda g: "classes " + ", ".join(g["classes"]))
    parts += _groups("leaks", "Leaks: the same image in training and in val/test", check.leaks, thumb,
                     lambda g: "splits " + ", ".join(g["splits"]))
    if check.near_duplicates is None:
        parts += ["<h2 id='near-duplicates'>Near-duplicates across splits</h2>",
                  f"<p class='none'>{_e(check.near_duplicate_check or 'not checked')}</p>"]
    else:
        parts += _groups("near-duplicates", "Near-duplicates: a val/test image that looks like a training image",
                         check.near_duplicates, thumb, lambda g: f"splits {', '.join(g['splits'])}; "
                         f"perceptual hashes {g['distance']} of 256 bits apart (0: the same picture)")
    parts += _groups("duplicates", "Duplicates: the same image twice in one class", check.duplicates, thumb,
                     lambda g: f"class {g['class']}, {g['split']}")
    parts += _label_issues(check, thumb)
    parts += _skipped(folder)
    parts.append(_classes(check))
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tl_keras data check</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def _e(text) -> str:
    return html.escape(str(text))


def _in_memory(folder: ImageFolder) -> dict[str, np.ndarray]:
    """path -> pixels, for images that are no file (tf.data elements, named like `train[3]`)."""
    return {sample.path: pixels for split in folder.splits.values() for i, sample in enumerate(split.samples)
            if (pixels := split.held_pixels(i)) is not None}


def _where(folder: ImageFolder, path: str) -> str:
    root = folder.root if isinstance(folder.root, str) else ""
    try:
        return os.path.relpath(path, os.path.dirname(root) if os.path.isfile(root) else root) if root else path
    except ValueError:  # another drive (Windows)
        return path


def _thumbnail(path: str, pixels: dict[str, np.ndarray], exif_orientation: bool) -> str:
    """A data: URL of the image's JPEG thumbnail, turned upright by its EXIF orientation."""
    image = open_reduced(path, "RGB", THUMBNAIL, exif_orientation, pixels.get(path))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _figure(path: str, pixels: dict[str, np.ndarray], caption: str, exif_orientation: bool = True) -> str:
    try:
        picture = f"<img src='{_thumbnail(path, pixels, exif_orientation)}' alt='{_e(caption)}'>"
    except (OSError, ValueError) as err:  # gone or unreadable since the check: said, not hidden
        picture = f"<div class='missing'>cannot show: {_e(err)}</div>"
    return f"<figure>{picture}<figcaption>{_e(caption)}</figcaption></figure>"


def _summary(folder: ImageFolder, check: DataCheck) -> str:
    items = [(f"{len(folder.class_names)} classes; found {folder.num_found} files, used {folder.num_used}, "
              f"skipped {len(folder.skipped)}"),
             f"{len(check.duplicates)} duplicate groups, {len(check.conflicts)} label conflicts, {len(check.leaks)} leaks"
             + (f", {len(check.near_duplicates)} near-duplicates across splits" if check.near_duplicates is not None else "")
             + (f"; imbalance {check.imbalance:.1f}x" if check.imbalance else "")]
    if check.label_issues is not None:
        items.append(f"{len(check.label_issues)} likely label errors ({check.label_check})")
    elif check.label_check:
        items.append(check.label_check)
    else:
        items.append("label errors not checked: give a backbone (tl-keras check DATA --backbone B), or see train's report")
    items += [f"dropped {path}: {reason}" for path, reason in check.dropped]
    return "<ul id='summary'>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _more(shown: int, total: int, what: str) -> list[str]:
    if total <= shown:
        return []
    return [(f"<p class='more'>{total - shown} more {what} not shown here: the JSON report "
             "(tl-keras check --json, metrics['data_check']) lists them all.</p>")]


def _groups(anchor: str, heading: str, groups: list[dict], thumb, describe) -> list[str]:
    out = [f"<h2 id='{anchor}'>{_e(heading)} ({len(groups)})</h2>"]
    if not groups:
        return out + ["<p class='none'>none found</p>"]
    for group in groups[:MAX_GROUPS]:
        figures = "".join(thumb(p) for p in group["paths"])
        out.append(f"<div class='group {anchor}'><p>{_e(describe(group))}</p>{figures}</div>")
    return out + _more(MAX_GROUPS, len(groups), anchor)


def _label_issues(check: DataCheck, thumb) -> list[str]:
    count = "" if check.label_issues is None else f" ({len(check.label_issues)})"
    out = [f"<h2 id='label-issues'>Likely label errors{count}</h2>"]
    if check.label_issues is None:
        return out + [f"<p class='none'>{_e(check.label_check or 'not checked')}</p>"]
    if not check.label_issues:
        return out + ["<p class='none'>none found</p>"]
    rows = ["<tr><th>image</th><th>given</th><th>looks like</th><th>confidence</th></tr>"]
    for issue in check.label_issues[:MAX_GROUPS]:
        rows.append(f"<tr class='label-issue'><td>{thumb(issue['path'])}</td>"
                    f"<td class='given'>{_e(issue['given'])}</td><td class='predicted'>{_e(issue['predicted'])}</td>"
                    f"<td class='confidence'>{issue['confidence']:.2f}</td></tr>")
    return out + ["<p>Most likely first. The head that judged each image never saw its label; check the "
                  "image and fix the label file or folder if it is wrong.</p><table>" + "".join(rows) + "</table>"] + _more(
        MAX_GROUPS, len(check.label_issues), "likely label errors")


def _skipped(folder: ImageFolder) -> list[str]:
    out = [f"<h2 id='skipped'>Skipped files ({len(folder.skipped)})</h2>"]
    if not folder.skipped:
        return out + ["<p class='none'>none: every file found is used</p>"]
    rows = "".join(f"<tr class='skipped'><td>{_e(path)}</td><td>{_e(reason)}</td></tr>" for path, reason in folder.skipped)
    return out + [f"<table><tr><th>file</th><th>why</th></tr>{rows}</table>"]


def _classes(check: DataCheck) -> str:
    splits = list(check.class_counts)
    names = list(next(iter(check.class_counts.values()))) if splits else []
    head = "<tr><th>class</th>" + "".join(f"<th>{_e(s)}</th>" for s in splits) + "</tr>"
    rows = "".join("<tr class='class'><td>" + _e(c) + "</td>" + "".join(f"<td>{check.class_counts[s][c]}</td>" for s in splits)
                   + "</tr>" for c in names)
    small = (f"<p>fewer than {MIN_PER_CLASS} training images: {_e(', '.join(check.small_classes))}</p>" if check.small_classes else "")
    return f"<h2 id='classes'>Classes</h2><table>{head}{rows}</table>{small}"
