"""tl_keras: transfer learning with Keras 3 / TensorFlow in one call.

>>> import tl_keras
>>> result = tl_keras.train("path/to/images", backbone="mobilenet_v2")  # doctest: +SKIP
"""

from tl_keras.registry import BackboneDownloadError, BackboneSpec, resolve_backbone  # noqa: F401
from tl_keras.hub import HubBackbone  # noqa: F401
from tl_keras.backbones import KerasBackbone, PixelRange, build_backbone  # noqa: F401
from tl_keras.classifier import ImageClassifier, build_classifier, load_classifier  # noqa: F401
from tl_keras.data import ImageFolder, load_image_folder  # noqa: F401
from tl_keras.distribute import get_strategy  # noqa: F401
from tl_keras.training import FineTuneHistory, fine_tune  # noqa: F401
from tl_keras.export import export_saved_model  # noqa: F401
from tl_keras.serving import ExportedModel  # noqa: F401
from tl_keras.advisor import Advice, advise  # noqa: F401
from tl_keras.api import CrossValidation, TrainResult, cross_validate, lr_find, train  # noqa: F401

__version__ = "0.1.0"
