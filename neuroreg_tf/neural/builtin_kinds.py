"""The built-in target kinds (``target_registry``): the paper's targets and controls, and ours.

The paper's VGG control is an instance of ``pretrained_kinds.pretrained_layer_kind``.

Each entry says what the kind needs and builds it from a ``BuildContext``; the maths lives in
``target_kinds`` (embeddings, Eq 1-6) and ``streaming`` (stimulus sets too large to hold).
"""

from __future__ import annotations

import numpy as np

from neuroreg_tf import targets
from neuroreg_tf.errors import ConfigError
from neuroreg_tf.neural import pretrained_kinds, streaming, target_kinds
from neuroreg_tf.neural.target_registry import (
    GROUND_TRUTH,
    ON_RECORDED_IMAGES,
    ON_STIMULUS_SET,
    PREDICTIVE_MODEL,
    SHARED_IMAGES,
    SHARED_ORACLE,
    BuildContext,
    TargetKind,
    register_target_kind,
)

MODEL_METHOD = "Eq 6: neutral-state predictions x w_a v_a, averaged over scans"
SHUFFLE_METHOD = "neural_model target with stimulus identities permuted"
RANDOM_METHOD = "Eq 2 on Gaussian noise with the neural_model spread"


def _neural_model(context: BuildContext, path: str) -> int:
    if context.streamed:
        target_kinds.stream_model_target(
            path, context.scans, context.stimuli_fn, context.n_stimuli, context.image_shape,
            simulated=context.simulated, projection_dims=context.projection_dims, chunk=context.chunk,
            provenance={**context.provenance, **context.stimulus_info}, log=context.log,
        )
        return context.n_stimuli
    return context.write(path, "neural_model", context.union_images, embedding=context.model_embedding(),
                         method=MODEL_METHOD)


def _streamed_model_rows(context: BuildContext, kind: str):
    """The streamed Neural (model) target's embedding, which a streamed control is made from."""
    if "neural_model" not in context.written:
        raise ConfigError(
            f"The {kind!r} control is made from the neural_model target; build that first (with a stimulus "
            f"set, make neural_model the primary kind). Received: kinds without it"
        )
    return targets.load_target(context.written["neural_model"]).embedding


def _stream_rows(context: BuildContext, path: str, kind: str, rows_fn, dims: int, metadata: dict) -> int:
    streaming.stream_rows_target(
        path, n_stimuli=context.n_stimuli, stimulus_shape=context.image_shape, stimuli_fn=context.stimuli_fn,
        rows_fn=rows_fn, dims=dims, kind=kind, simulated=context.simulated,
        metadata={**context.labelled({**context.provenance, **context.stimulus_info}), **metadata}, chunk=context.chunk,
    )
    return context.n_stimuli


def _shuffle(context: BuildContext, path: str) -> int:
    metadata = {"method": SHUFFLE_METHOD, "permutation_seed": context.seed}
    if not context.streamed:
        shuffled, _ = target_kinds.shuffle_embedding(context.model_embedding(), context.seed)
        return context.write(path, "shuffle", context.union_images, embedding=shuffled, **metadata)
    embedding = _streamed_model_rows(context, "shuffle")
    permutation = np.random.default_rng(context.seed).permutation(context.n_stimuli)

    def rows_fn(start, stop):
        wanted = permutation[start:stop]
        ordered = np.sort(wanted)  # memory-mapped rows are read in file order
        return np.asarray(embedding[ordered])[np.searchsorted(ordered, wanted)]

    return _stream_rows(context, path, "shuffle", rows_fn, embedding.shape[1], metadata)


def _random(context: BuildContext, path: str) -> int:
    model = _streamed_model_rows(context, "random") if context.streamed else context.model_embedding()
    spread = target_kinds.similarity_spread(model, seed=context.seed)
    noise = target_kinds.random_embedding(context.n_stimuli, spread, context.seed)
    metadata = {"method": RANDOM_METHOD, "spread": spread}
    if not context.streamed:
        return context.write(path, "random", context.union_images, embedding=noise, **metadata)
    return _stream_rows(context, path, "random", lambda start, stop: noise[start:stop], noise.shape[1], metadata)


def _neural_data(context: BuildContext, path: str) -> int:
    return context.write(
        path, "neural_data", context.shared_images, embedding=context.data_embedding(), with_stimulus_info=False,
        image_ids=context.shared_ids,
        method="Eq 1-2 on the first single trial of each image shown in every scan, averaged over scans",
    )


def _oracle(context: BuildContext, path: str) -> int:
    images = context.union_images[np.searchsorted(context.union_ids, context.oracle_ids)]
    return context.write(
        path, "oracle", images, matrix=target_kinds.oracle_matrix(context.scans, context.oracle_ids),
        with_stimulus_info=False, image_ids=context.oracle_ids,
        method="Eq 3 on the shared oracle images, averaged over scans",
    )


def _ground_truth(context: BuildContext, path: str) -> int:
    return context.write(path, "ground_truth", context.union_images, embedding=context.truth_embedding(),
                         method="Eq 2 on the noiseless neutral-state rates of all recorded neurons")


def _gabor_v1(context: BuildContext, path: str) -> int:
    return context.write(
        path, "gabor_v1", context.union_images, embedding=target_kinds.gabor_v1_embedding(context.union_images),
        method="Eq 2 on a fixed, noiseless Gabor filter bank (simple and complex cells)",
        n_filters=target_kinds.GABOR_NEURONS, filter_seed=target_kinds.GABOR_SEED,
    )


def _pixel(context: BuildContext, path: str) -> int:
    return context.write(path, "pixel", context.union_images,
                         embedding=target_kinds.pixel_embedding(context.union_images),
                         method="Eq 2 on the stimuli's pixels")


for _kind in (
    TargetKind("neural_model", "Neural (model)", "Eq 6: predictive-model responses, scans averaged",
               _neural_model, needs={PREDICTIVE_MODEL}, on_stimulus_set=ON_STIMULUS_SET),
    TargetKind("neural_data", "Neural (data)", "Eq 1-2 on raw single trials",
               _neural_data, needs={SHARED_IMAGES}, on_stimulus_set=ON_RECORDED_IMAGES),
    TargetKind("oracle", "Oracle", "Eq 3 on the repeated (oracle) images, scans averaged",
               _oracle, needs={SHARED_ORACLE}, on_stimulus_set=ON_RECORDED_IMAGES),
    TargetKind("shuffle", "Shuffle",
               "the Neural (model) target with stimulus identities permuted (the paper's control)",
               _shuffle, needs={PREDICTIVE_MODEL}, on_stimulus_set=ON_STIMULUS_SET),
    TargetKind("random", "Random", "random vectors with the Neural (model) similarity spread",
               _random, needs={PREDICTIVE_MODEL}, on_stimulus_set=ON_STIMULUS_SET),
    TargetKind("ground_truth", "Ground truth (pooled)",
               "the SIMULATED population's noiseless responses, all recorded neurons pooled and unweighted "
               "(not built like Neural (model), which weights neurons and averages scans: see "
               "neural/decomposition_kinds.py)",
               _ground_truth, needs={GROUND_TRUTH}),
    TargetKind("gabor_v1", "Gabor V1",
               "a fixed, noiseless Gabor filter bank (model V1, VOneNet-like); on SIMULATED data it shares "
               "the simulator's receptive-field model class", _gabor_v1),
    TargetKind("pixel", "Pixel", "the stimuli's own pixel similarity", _pixel),
    pretrained_kinds.pretrained_layer_kind(
        "vgg", label="VGG", architecture="VGG19", layer="block3_conv1", preprocessing="vgg19",
        description="VGG19 block3_conv1 feature similarity (the paper's control; needs ImageNet weights)",
    ),
):
    register_target_kind(_kind)
