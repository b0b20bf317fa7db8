"""The joint tf.data pipeline (classification batches paired with stimulus batches) and the schedule."""

import numpy as np
import pytest

from neuroreg_tf.training import CyclicStepDecay, joint_dataset, split_stimuli

from conftest import JOINT_BATCH as BATCH
from conftest import JOINT_STIMULI as N_STIMULI


def test_joint_batches_pair_distinct_stimuli_with_their_targets(target, training_data):
    seen = []
    for batch in training_data.take(10):
        indices = batch["stimulus_indices"].numpy()
        assert len(set(indices)) == BATCH
        np.testing.assert_array_equal(batch["stimuli"].numpy(), target.stimuli[indices])
        np.testing.assert_allclose(batch["target_similarity"].numpy(), target.similarity(indices), atol=1e-6)
        assert batch["images"].shape == (BATCH, 28, 28, 1)
        seen.append(indices)
    assert len(seen) == 4  # the classification set sets the epoch length
    first_pass = np.concatenate(seen)
    assert len(set(first_pass)) == len(first_pass), "no stimulus repeats within a pass"


def test_split_stimuli_is_a_deterministic_partition():
    train, held_out = split_stimuli(100, 0.2, seed=3)
    assert len(held_out) == 20 and not set(train) & set(held_out)
    assert sorted(np.concatenate([train, held_out])) == list(range(100))
    np.testing.assert_array_equal(split_stimuli(100, 0.2, seed=3)[1], held_out)


def test_pipeline_rejects_impossible_batches(target, classification):
    with pytest.raises(ValueError, match="at least 2 stimuli"):
        joint_dataset(classification, target, np.arange(N_STIMULI), 1, seed=0)
    with pytest.raises(ValueError, match="fewer than one stimulus batch"):
        joint_dataset(classification, target, np.arange(5), BATCH, seed=0)


def test_paper_schedule():
    schedule = CyclicStepDecay(0.1, steps_per_epoch=10)
    rates = [float(schedule(epoch * 10 + 3)) for epoch in range(40)]
    expected = [0.1 * 0.3 ** ((epoch % 20) // 4) for epoch in range(40)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert rates[19] < 0.001 and rates[20] == pytest.approx(0.1)
    assert CyclicStepDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
