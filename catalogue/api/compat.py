"""``POST /predict/``: the seed project's route and answer, so its clients (a Dash front end and scripts) work
against Artsite by changing only their URL and token.

It answers exactly ``{"prediction": {"label", "probability"}, "nearest_neighbors": [{"base64", "label",
"position"}, ...]}`` — the type's slug, its probability rounded to two decimals, and the five most similar works,
nearest first, each with its image file's bytes in base64 and its effective type. Behind it is what
``classify/`` does (the upload's checks, ``image_classify``); nothing is stored. Authentication is Artsite's
(``Authorization: Bearer <token>`` or ``Token <token>``), errors have the API's error shape.
"""

from __future__ import annotations

import base64
import logging

from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue.api import serializers
from catalogue.api.permissions import ActionPermissions
from catalogue.api.throttles import ScopedThrottle
from catalogue.api.views import IMAGE_ERRORS, errors
from catalogue.models import Artwork
from catalogue.services.artworks import image_check, read_upload
from catalogue.services.classification import image_classify

logger = logging.getLogger(__name__)

#: The seed project always answered five neighbours.
SEED_NEIGHBOURS = 5


class SeedPredictView(APIView):
    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [ActionPermissions]
    required_permissions = {"post": ["catalogue.view_artwork"]}
    throttle_classes = [ScopedThrottle]
    throttle_scope = "classify"

    @extend_schema(
        summary="Classify an image, the seed project's way",
        description="The seed project's `POST /predict/` (multipart field `image`): the predicted type and its "
        "probability (two decimals), and the five most similar works, nearest first, each with its image file in "
        "base64 and its type. The same checks, limits and errors as `classify/`; nothing is stored. Throttled "
        "(scope `classify`).",
        request={"multipart/form-data": serializers.ClassifyInputSerializer},
        responses={
            200: serializers.SeedPredictResponseSerializer,
            **errors(400, 401, 403, 413, 415, 429, 503, **IMAGE_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        form = serializers.ClassifyInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        checked = image_check(data=read_upload(form.validated_data["image"]))
        result = image_classify(image=checked.decoded.image, k=SEED_NEIGHBOURS)
        return Response(
            {
                "prediction": {
                    "label": result.predicted_type.slug,
                    "probability": round(result.confidence, 2),
                },
                "nearest_neighbors": [
                    {
                        "base64": _image_base64(work.artwork),
                        "label": result.type_slugs.get(work.effective_type_id, ""),
                        "position": position,
                    }
                    for position, work in enumerate(result.similar, start=1)
                ],
            }
        )


def _image_base64(artwork: Artwork) -> str:
    try:
        with artwork.image.open("rb") as handle:
            return base64.b64encode(handle.read()).decode("ascii")
    except OSError:  # a missing file must not cost the client the whole answer
        logger.warning("image of artwork %s cannot be read", artwork.pk, exc_info=True)
        return ""
