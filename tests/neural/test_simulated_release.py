"""The SIMULATED release: laid out like the public colour releases and read back exactly."""

import os
import zipfile

import numpy as np

from neuroreg_tf.neural import recordings, simulated_release


def test_simulated_release_is_read_back_as_the_neurons_saw_it(tmp_path):
    summary = simulated_release.write_simulated_release(
        str(tmp_path), n_single=30, n_oracle=4, n_repeats=3, neurons_per_scan=8, n_new_stimuli=3, log=None
    )
    names = [os.path.basename(p) for p in summary["recordings"]]
    assert names == [
        "static90001-1-1-ColorImageNet-SIMULATED.zip",
        "static90001-1-2-ColorImageNet-SIMULATED.zip",
        "static90002-1-1-ColorImageNet-SIMULATED.zip",
    ]
    with zipfile.ZipFile(summary["recordings"][0]) as archive:
        stem = names[0][: -len(".zip")]
        image = np.load(archive.open(f"{stem}/data/images/0.npy"))
        assert image.shape == (2, 144, 256) and image.dtype == np.uint8
        assert f"{stem}/meta/trials/colorframeprojector_image_id.npy" in archive.namelist()
    scans = [recordings.read_recording(p) for p in summary["recordings"]]
    for scan, path in zip(scans, summary["recordings"]):
        assert scan.simulated and scan.image_id_name == "colorframeprojector_image_id"
        assert scan.images.shape[1:] == (36, 64, 1)
        with zipfile.ZipFile(path) as archive:
            stem = os.path.basename(path)[: -len(".zip")]
            stored = np.load(archive.open(f"{stem}/data/images/5.npy")).astype(np.float64)
        expected = stored.mean(axis=0).reshape(36, 4, 64, 4).mean(axis=(1, 3)) / 255.0
        np.testing.assert_allclose(scan.images[5, ..., 0], expected, atol=1e-6)
    assert scans[0].neuron_meta["animal_ids"][0] == 90001 and scans[2].neuron_meta["animal_ids"][0] == 90002
    assert scans[1].neuron_meta["scan_idx"][0] == 2
    np.testing.assert_array_equal(np.unique(scans[0].image_ids), np.unique(scans[1].image_ids))
    assert not np.intersect1d(scans[0].image_ids, scans[2].image_ids).size  # the animals saw different images
    assert len(os.listdir(summary["new_stimuli"])) == 3
