"""The similarity target file format: round trips and validation."""

import json
import os

import numpy as np
import pytest

from neuroreg_tf import similarity, targets


@pytest.fixture
def rng():
    return np.random.default_rng(3)


@pytest.fixture
def stimuli(rng):
    return rng.uniform(size=(30, 6, 8, 1)).astype(np.float32)


def test_matrix_round_trip(tmp_path, rng, stimuli):
    matrix = similarity.similarity_matrix(rng.normal(size=(30, 12)))
    targets.save_target(str(tmp_path), stimuli, similarity=matrix, kind="neural_data", simulated=True,
                        metadata={"source": "unit test"})
    loaded = targets.load_target(str(tmp_path))
    assert loaded.form == "matrix" and loaded.kind == "neural_data" and loaded.simulated
    assert loaded.metadata["source"] == "unit test"
    np.testing.assert_array_equal(np.asarray(loaded.stimuli), stimuli)
    indices = np.array([4, 0, 17, 29])
    np.testing.assert_allclose(loaded.similarity(indices), matrix[np.ix_(indices, indices)], atol=1e-6)


def test_embedding_round_trip_gives_e_et(tmp_path, rng, stimuli):
    embedding = similarity.stimulus_embedding(rng.normal(size=(30, 50)))
    targets.save_target(str(tmp_path), stimuli, embedding=embedding, kind="neural_model", simulated=False)
    loaded = targets.load_target(str(tmp_path))
    assert loaded.form == "embedding" and isinstance(loaded.embedding, np.memmap)
    indices = np.array([2, 9, 5])
    expected = embedding[indices] @ embedding[indices].T
    np.testing.assert_allclose(loaded.similarity(indices), expected, atol=1e-5)
    images, block = loaded.batch(indices)
    np.testing.assert_array_equal(images, stimuli[indices])
    np.testing.assert_allclose(np.diag(block), 1.0)


def _bad_matrix(kind, n):
    rng = np.random.default_rng(0)
    matrix = similarity.similarity_matrix(rng.normal(size=(n, 5)))
    if kind == "asymmetric":
        matrix[0, 1] += 0.1
    elif kind == "range":
        matrix[0, 1] = matrix[1, 0] = 1.5
    elif kind == "diagonal":
        np.fill_diagonal(matrix, 0.5)
    elif kind == "nan":
        matrix[2, 3] = matrix[3, 2] = np.nan
    return matrix


@pytest.mark.parametrize(
    "kind, message",
    [
        ("asymmetric", "symmetric"),
        ("range", r"\[-1, 1\]"),
        ("diagonal", "unit diagonal"),
        ("nan", "NaN"),
    ],
)
def test_invalid_matrices_are_rejected(tmp_path, stimuli, kind, message):
    with pytest.raises(targets.TargetError, match=message):
        targets.save_target(str(tmp_path), stimuli, similarity=_bad_matrix(kind, 30), simulated=True)


def test_stimulus_count_mismatch_is_rejected(tmp_path, stimuli):
    with pytest.raises(targets.TargetError, match="covers 29 stimuli but there are 30"):
        targets.save_target(str(tmp_path), stimuli, similarity=np.eye(29), simulated=True)
    with pytest.raises(targets.TargetError, match="29 rows"):
        targets.save_target(str(tmp_path), stimuli, embedding=np.eye(29), simulated=True)


def test_non_unit_embedding_and_bad_stimuli_are_rejected(tmp_path, stimuli):
    with pytest.raises(targets.TargetError, match="unit vectors"):
        targets.save_target(str(tmp_path), stimuli, embedding=2 * np.eye(30), simulated=True)
    with pytest.raises(targets.TargetError, match=r"\[0, 1\]"):
        targets.save_target(str(tmp_path), stimuli * 255, similarity=np.eye(30), simulated=True)
    with pytest.raises(targets.TargetError, match="grayscale"):
        targets.save_target(str(tmp_path), np.zeros((30, 6, 8, 3)), similarity=np.eye(30), simulated=True)
    with pytest.raises(ValueError, match="kind"):
        targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), kind="nope", simulated=True)


def test_corruption_on_disk_is_caught_on_load(tmp_path, stimuli):
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    np.save(tmp_path / "similarity.npy", _bad_matrix("asymmetric", 30).astype(np.float32))
    with pytest.raises(targets.TargetError, match="similarity.npy is damaged or was replaced"):
        targets.load_target(str(tmp_path))
    # Without the checksums (an older target), validation still finds the asymmetry.
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    del metadata["files"]
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(targets.TargetError, match="symmetric"):
        targets.load_target(str(tmp_path))
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    metadata["n_stimuli"] = 31
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(targets.TargetError, match="corrupted"):
        targets.load_target(str(tmp_path), validate=False)


def test_missing_target_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_target.py"):
        targets.load_target(os.path.join(tmp_path, "absent"))


def test_out_of_range_indices(tmp_path, stimuli):
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    loaded = targets.load_target(str(tmp_path))
    with pytest.raises(IndexError, match=r"\[0, 30\)"):
        loaded.similarity([0, 30])
