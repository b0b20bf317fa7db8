"""A target kind of our own, registered the way a user's module would (NEUROREG_TF_PLUGINS).

``inverted_pixel``: Eq 2 on the pixels of 1 - image. Nothing in the package names it.
"""

import numpy as np

from neuroreg_tf import similarity
from neuroreg_tf.neural import target_registry


def build(context, path):
    images = context.union_images
    embedding = similarity.stimulus_embedding((1.0 - images).reshape(images.shape[0], -1)).astype(np.float32)
    return context.write(path, "inverted_pixel", images, embedding=embedding, method="Eq 2 on 1 - pixels")


KIND = target_registry.register_target_kind(target_registry.TargetKind(
    name="inverted_pixel", label="Inverted pixel", description="Eq 2 on the pixels of 1 - image (a test kind)",
    build=build,
))
