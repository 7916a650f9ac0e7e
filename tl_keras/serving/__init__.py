"""Step 5 of the flow: using an export. `client` (`ExportedModel`: predict / evaluate from
Python), `embed` (feature vectors), `rest` (TF Serving's REST protocol, versions, batching),
`server` (`tl-keras serve` over aiohttp; its page is `page.html`).

>>> from tl_keras.serving import ExportedModel
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "ExportedModel": "tl_keras.serving.client",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
