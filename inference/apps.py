from django.apps import AppConfig
from PIL import Image

from inference.preprocessing import pixel_limit


class InferenceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "inference"
    verbose_name = "Models"

    def ready(self) -> None:
        # Pillow's own decompression-bomb check follows the configured limit in every process (web, workers,
        # training, commands); inference/preprocessing.py checks first, with a clearer message.
        Image.MAX_IMAGE_PIXELS = pixel_limit()
