"""The README's library tour runs as printed (on a small saved target instead of the demo's)."""

import os
import re

import numpy as np

from conftest import REPO_ROOT, needs_fashion_mnist


def library_tour() -> str:
    readme = open(os.path.join(REPO_ROOT, "README.md")).read()
    section = readme[readme.index("## Library tour"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@needs_fashion_mnist
def test_library_tour_runs(tmp_path, capsys):
    from neuroreg_tf import similarity, targets

    rng = np.random.default_rng(0)
    path = str(tmp_path / "target")
    stimuli = rng.uniform(size=(96, 36, 64, 1)).astype(np.float32)
    embedding = similarity.stimulus_embedding(rng.normal(size=(96, 4))).astype(np.float32)
    targets.save_target(path, stimuli, embedding=embedding, kind="custom", simulated=True)
    code = library_tour()
    assert '"runs/demo/target"' in code and "limit=640" in code
    code = code.replace('"runs/demo/target"', repr(path)).replace("limit=640", "limit=128")
    namespace = {}
    exec(compile(code, "README.md (Library tour)", "exec"), namespace)
    assert len(namespace["stages"]) == 4 and namespace["stem"].shape[0] == 8
    gamma = np.asarray(namespace["model"].gamma())
    assert gamma.shape == (5,) and np.ptp(gamma) > 0  # trained away from the equal start
    assert namespace["s_cnn"].shape == (8, 8)
    printed = capsys.readouterr().out
    assert "tf.Tensor" in printed
