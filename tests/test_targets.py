"""The similarity target file format: round trips and validation."""

import json
import os
import re

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
    with pytest.raises(ValueError, match="`kind` must be a name"):
        targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), kind="Neural model!", simulated=True)


def test_corruption_on_disk_is_caught_on_load(tmp_path, stimuli):
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    np.save(tmp_path / "similarity.npy", _bad_matrix("asymmetric", 30).astype(np.float32))
    with pytest.raises(targets.TargetError, match="similarity.npy is damaged or was replaced"):
        targets.load_target(str(tmp_path))
    # Without validation, the asymmetry is still found by the target's own checks.
    with pytest.raises(targets.TargetError, match="symmetric"):
        targets.load_target(str(tmp_path), validate=False).validate()
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    metadata["n_stimuli"] = 31
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(targets.TargetError, match="corrupted"):
        targets.load_target(str(tmp_path), validate=False)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("files"), "lacks the checksum of stimuli.npy and the checksum of similarity.npy,"),
    (lambda m: m["files"].pop("stimuli.npy"), "lacks the checksum of stimuli.npy,"),
    (lambda m: m.pop("fingerprint"), "lacks its fingerprint,"),
    (lambda m: m.update(simulated=False), "was changed after the target was written"),
])
def test_metadata_missing_an_entry_or_edited_is_refused(tmp_path, stimuli, edit, message):
    # The case reported: files entry removed and stimuli.npy reversed; nothing may train on it.
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    np.save(tmp_path / "stimuli.npy", stimuli[::-1])
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    edit(metadata)
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(targets.TargetError, match=message):
        targets.load_target(str(tmp_path))


def test_missing_target_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_target.py"):
        targets.load_target(os.path.join(tmp_path, "absent"))


def test_out_of_range_indices(tmp_path, stimuli):
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    loaded = targets.load_target(str(tmp_path))
    with pytest.raises(IndexError, match=r"\[0, 30\)"):
        loaded.similarity([0, 30])


def _unit_diagonal_matrix(n, entries):
    """An (n, n) float64 matrix with a unit diagonal and the given {(i, j): value} entries, both ways."""
    matrix = np.eye(n)
    for (i, j), value in entries.items():
        matrix[i, j] = matrix[j, i] = value
    return matrix


def test_similarities_of_minus_one_are_valid_and_below_minus_one_are_not():
    # Opposite population vectors have a cosine of exactly -1: a valid similarity.
    targets.validate_similarity_matrix(_unit_diagonal_matrix(3, {(0, 1): -1.0, (0, 2): 1.0}))
    with pytest.raises(targets.TargetError, match=r"\[-1, 1\].*Received: values in \[-1.5, 1\]"):
        targets.validate_similarity_matrix(_unit_diagonal_matrix(3, {(0, 1): -1.5}))


def test_validation_tolerances_are_inclusive():
    """A value exactly at a tolerance is accepted (|error| <= tol, as np.isclose), the next float beyond is not."""
    low = -1.0 - targets._RANGE_ATOL
    high = 1.0 + targets._RANGE_ATOL
    targets.validate_similarity_matrix(_unit_diagonal_matrix(3, {(0, 1): low, (0, 2): high}))
    for value in (np.nextafter(low, -2.0), np.nextafter(high, 2.0)):
        with pytest.raises(targets.TargetError, match=r"\[-1, 1\]"):
            targets.validate_similarity_matrix(_unit_diagonal_matrix(3, {(0, 1): value}))
    asymmetric = np.eye(3)
    asymmetric[1, 0] = targets._SYMMETRY_ATOL  # |S_01 - S_10| is exactly the tolerance
    targets.validate_similarity_matrix(asymmetric)
    asymmetric[1, 0] = np.nextafter(targets._SYMMETRY_ATOL, 1.0)
    with pytest.raises(targets.TargetError, match="symmetric"):
        targets.validate_similarity_matrix(asymmetric)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (3,), (2, 2, 2)])
def test_matrices_that_are_not_square_are_rejected(shape):
    with pytest.raises(targets.TargetError, match=rf"square \(n, n\). Received: shape={re.escape(str(shape))}"):
        targets.validate_similarity_matrix(np.zeros(shape))


def test_defects_in_any_row_are_found_also_across_chunks(monkeypatch):
    """Matrices and embeddings are validated in chunks of rows; with chunks of 4 rows, a 10-stimulus
    target spans three, and a defect in the first or the last row is still found."""
    monkeypatch.setattr(targets, "_CHUNK_ROWS", 4)
    rng = np.random.default_rng(4)
    embedding = similarity.stimulus_embedding(rng.normal(size=(10, 3)))
    matrix = embedding @ embedding.T
    np.fill_diagonal(matrix, 1.0)
    targets.validate_similarity_matrix(matrix, 10)
    targets.validate_embedding(embedding, 10)
    for row in (0, 9):
        bad = matrix.copy()
        bad[row, row] = 0.5
        with pytest.raises(targets.TargetError, match=r"unit diagonal.*Received: diagonal values in \[0.5, 1\]"):
            targets.validate_similarity_matrix(bad, 10)
        bad = matrix.copy()
        bad[row, 5] += 0.1
        with pytest.raises(targets.TargetError, match="symmetric"):
            targets.validate_similarity_matrix(bad, 10)
        bad = embedding.copy()
        bad[row] *= 2.0
        with pytest.raises(targets.TargetError, match=r"unit vectors.*Received: row norms in \[1, 2\]"):
            targets.validate_embedding(bad, 10)


def test_embedding_rows_are_counted_in_the_mismatch_message(tmp_path, stimuli):
    embedding = similarity.stimulus_embedding(np.random.default_rng(1).normal(size=(29, 5)))
    with pytest.raises(targets.TargetError, match="The embedding has 29 rows but there are 30 stimulus images"):
        targets.save_target(str(tmp_path), stimuli, embedding=embedding, simulated=True)


def test_embedding_similarity_stays_within_minus_one_and_one(stimuli):
    """Rows within the allowed 1e-4 of unit norm can give |E E^T| > 1; the block is clipped to [-1, 1]."""
    a = np.float32(1.0 + 5e-5)
    embedding = np.array([[a, 0.0], [a, 0.0], [-a, 0.0], [0.0, 1.0]], np.float32)
    target = targets.SimilarityTarget(stimuli=stimuli[:4], embedding=embedding)
    target.validate()
    assert a * a > 1.0  # the raw products leave [-1, 1]
    expected = np.array([[1, 1, -1, 0], [1, 1, -1, 0], [-1, -1, 1, 0], [0, 0, 0, 1]], np.float32)
    np.testing.assert_array_equal(target.similarity(np.arange(4)), expected)


def test_indices_must_be_1d_integers_within_range(tmp_path, stimuli):
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    loaded = targets.load_target(str(tmp_path))
    for indices in (np.array([[0, 1]]), np.array([0.0, 1.0])):
        with pytest.raises(ValueError, match="1-D integer array"):
            loaded.similarity(indices)
    with pytest.raises(IndexError, match=r"\[0, 30\). Received: min=-1, max=0"):
        loaded.similarity([-1, 0])  # not the last stimulus, as NumPy would read -1


def test_finish_target_writes_metadata_for_arrays_written_in_place(tmp_path, rng, stimuli):
    embedding = similarity.stimulus_embedding(rng.normal(size=(30, 4))).astype(np.float32)
    for name, array in (("stimuli.npy", stimuli), ("embedding.npy", embedding)):
        np.lib.format.open_memmap(str(tmp_path / name), mode="w+", dtype=np.float32, shape=array.shape)[:] = array
    assert targets.finish_target(str(tmp_path), kind="neural_model", simulated=True) == str(tmp_path)
    loaded = targets.load_target(str(tmp_path))
    assert loaded.form == "embedding" and loaded.kind == "neural_model" and loaded.simulated
    np.testing.assert_array_equal(np.asarray(loaded.embedding), embedding)
    np.testing.assert_array_equal(np.asarray(loaded.stimuli), stimuli)
    # Both array forms, or a missing stimuli.npy, are refused before anything is read.
    np.save(tmp_path / "similarity.npy", np.eye(30, dtype=np.float32))
    with pytest.raises(targets.TargetError, match=r"must hold stimuli.npy and exactly one of embedding.npy or "
                       r"similarity.npy. Received: files \['embedding.npy', 'metadata.json', 'similarity.npy', "
                       r"'stimuli.npy'\]"):
        targets.finish_target(str(tmp_path), simulated=True)
    os.remove(tmp_path / "embedding.npy")
    os.remove(tmp_path / "stimuli.npy")
    with pytest.raises(targets.TargetError, match=r"must hold stimuli.npy.*Received: files \['metadata.json', "
                       r"'similarity.npy'\]"):
        targets.finish_target(str(tmp_path), simulated=True)


def test_load_target_reads_into_memory_without_mmap(tmp_path, stimuli):
    targets.save_target(str(tmp_path), stimuli, similarity=np.eye(30), simulated=True)
    loaded = targets.load_target(path=str(tmp_path), mmap=False)
    assert not isinstance(loaded.stimuli, np.memmap) and not isinstance(loaded.matrix, np.memmap)
    np.testing.assert_array_equal(loaded.stimuli, stimuli)
    np.testing.assert_array_equal(loaded.matrix, np.eye(30))


def test_metadata_describes_the_arrays_and_3d_stimuli_get_a_channel(tmp_path, stimuli):
    """(n, height, width) grayscale stimuli are accepted (check_stimuli's message says so) and stored
    as (n, height, width, 1); metadata.json records their count and image shape."""
    targets.save_target(str(tmp_path), stimuli[..., 0], similarity=np.eye(30), simulated=False)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["n_stimuli"] == 30 and metadata["stimulus_shape"] == [6, 8, 1]
    assert metadata["form"] == "matrix" and metadata["simulated"] is False
    loaded = targets.load_target(str(tmp_path))
    assert loaded.stimuli.shape == (30, 6, 8, 1)
    np.testing.assert_array_equal(np.asarray(loaded.stimuli), stimuli)


def test_saving_again_replaces_the_other_form(tmp_path, rng, stimuli):
    """save_target replaces existing target files: a matrix saved over an embedding leaves no embedding.npy."""
    embedding = similarity.stimulus_embedding(rng.normal(size=(30, 4)))
    targets.save_target(str(tmp_path), stimuli, embedding=embedding, simulated=True)
    matrix = similarity.similarity_matrix(rng.normal(size=(30, 12)))
    targets.save_target(str(tmp_path), stimuli, similarity=matrix, simulated=True)
    assert sorted(os.listdir(tmp_path)) == ["metadata.json", "similarity.npy", "stimuli.npy"]
    np.testing.assert_allclose(targets.load_target(str(tmp_path)).full_matrix(), matrix, atol=1e-6)


def test_the_target_fingerprint_changes_with_every_input_it_covers(tmp_path, rng, stimuli):
    matrix = similarity.similarity_matrix(rng.normal(size=(stimuli.shape[0], 12)))

    def fingerprint_of(name, stimuli=stimuli, matrix=matrix, kind="neural_model", simulated=True, metadata=None):
        path = targets.save_target(str(tmp_path / name), stimuli, similarity=matrix, kind=kind, simulated=simulated,
                                   metadata=metadata)
        return targets.load_target(path).fingerprint

    original = fingerprint_of("original")
    assert fingerprint_of("again") == original  # the same content, written again
    one_pixel = stimuli.copy()
    one_pixel[3, 2, 1, 0] = np.nextafter(one_pixel[3, 2, 1, 0], 2.0, dtype=np.float32)
    one_pair = matrix.copy()
    one_pair[0, 1] = one_pair[1, 0] = np.float32(one_pair[0, 1]) * np.float32(0.5)
    for name, changes in {"pixel": {"stimuli": one_pixel}, "pair": {"matrix": one_pair}, "kind": {"kind": "shuffle"},
                          "label": {"simulated": False}, "provenance": {"metadata": {"seed": 1}}}.items():
        assert fingerprint_of(name, **changes) != original, name
