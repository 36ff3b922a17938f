"""Shared fixtures: small generated data only, and a private image cache per test session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Under pytest-xdist each worker has a core of its own: PyTorch (and NumPy's BLAS) on one thread, set before either is
# imported, so that two workers do not run four threads on two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Never touch the user's ~/.cache from tests; the session's own cache goes when the session ends.
if "AFFECTKIT_CACHE" not in os.environ:
    os.environ["AFFECTKIT_CACHE"] = tempfile.mkdtemp(prefix="affectkit-test-cache-")
    atexit.register(shutil.rmtree, os.environ["AFFECTKIT_CACHE"], ignore_errors=True)

from affectkit.config import Config  # noqa: E402


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """96 synthetic faces (12 per class) in the AffectNet layout, without the demo's settings file: tests state
    the settings they depend on."""
    from affectkit.config import DATA_CONFIG_NAME
    from affectkit.data.synthetic import make_demo_dataset

    root = make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n=96, seed=0, progress=False)
    (root / DATA_CONFIG_NAME).unlink()
    return root


@pytest.fixture
def voted_manifest(demo_dir, tmp_path) -> Path:
    """The demo faces as a CSV manifest of annotators' votes: 7 for each face's class, 3 for the next class."""
    import pandas as pd

    from affectkit.config import CLASS_NAMES
    from affectkit.data.reader import read_dataset

    rows = []
    for r in read_dataset(demo_dir, progress=False).records:
        votes = {name.lower(): 0 for name in CLASS_NAMES}
        votes[CLASS_NAMES[r.expression].lower()] = 7
        votes[CLASS_NAMES[(r.expression + 1) % 8].lower()] = 3
        rows.append({"path": str(r.image_path), "valence": r.valence, "arousal": r.arousal, **votes})
    path = tmp_path / "votes.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def partial_manifest(demo_dir, tmp_path) -> Path:
    """The demo faces as a CSV manifest where every third face has valence/arousal but no expression class."""
    import pandas as pd

    from affectkit.config import CLASS_NAMES
    from affectkit.data.reader import read_dataset

    rows = [{"path": str(r.image_path), "expression": "" if i % 3 == 0 else CLASS_NAMES[r.expression],
             "valence": r.valence, "arousal": r.arousal}
            for i, r in enumerate(read_dataset(demo_dir, progress=False).records)]
    path = tmp_path / "partial.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def rated_clips(tmp_path_factory) -> Path:
    """A clip manifest of 24 rendered clips of 6 people in their own split folders, each clip with its class, a
    valence and an arousal near its class's, its person and split."""
    import numpy as np
    import pandas as pd

    from affectkit.config import CLASS_NAMES
    from affectkit.data.synthetic import sample_valence_arousal
    from affectkit.temporal.demo import make_clip_demo

    folder = tmp_path_factory.mktemp("rated_clips")
    clips = make_clip_demo(folder / "clips", n=24, people=6, progress=False)
    rows = []
    for i, video in enumerate(sorted(clips.rglob("*.avi"))):
        valence, arousal = sample_valence_arousal(CLASS_NAMES.index(video.parent.name), 0.8,
                                                  np.random.default_rng(i))
        rows.append({"face": str(video), "expression": video.parent.name, "valence": valence, "arousal": arousal,
                     "subject": video.stem.split("_")[0], "split": video.parts[-3]})
    pd.DataFrame(rows).to_csv(folder / "clips.csv", index=False)
    return folder / "clips.csv"


@pytest.fixture
def demo_copy(demo_dir, tmp_path) -> Path:
    """A private, writable copy of the demo data for tests that damage it."""
    return Path(shutil.copytree(demo_dir, tmp_path / "data"))


@pytest.fixture(scope="module")
def one_thread():
    """Two OpenMP threads on two shared cores spin against any other busy process (a step can take 50x longer).
    Modules that train or predict a lot ask for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """An untrained custom CNN at 64 px, saved (``best_CustomCNN``), for inference and serving tests; one per
    module, so files a module writes beside it (an ONNX export) stay in that module."""
    import torch

    from affectkit.models import build_model, save_model

    torch.manual_seed(0)
    config = Config(img_size=64)
    return save_model(build_model("custom_cnn", config), tmp_path_factory.mktemp("model") / "best_CustomCNN", config)


@pytest.fixture
def tiny_config() -> Config:
    # fp32: tests recompute recorded losses exactly; bf16 autocast (auto on CPUs with native bf16) is tested apart.
    return Config(img_size=32, batch_size=16, epochs=2, fine_tune_epochs=1, num_workers=0, seed=0,
                  early_stopping_patience=5, precision="32")
