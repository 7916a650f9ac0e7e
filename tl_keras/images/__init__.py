"""Single images, before any dataset: `codec` (what a file's bytes are, decoding, EXIF, the one
resize and its framing), `quality` (why a file is skipped or worth a warning), `read` (reading files
and globs for prediction and serving). Nothing here knows about classes or splits."""
