"""Two CPU processes (gloo) through Lightning's DDP give the result of one process, within tolerance."""

import os
import subprocess
import sys

import pandas as pd
import pytest


def _train(demo_dir, out, devices):
    args = ["train", "--model", "custom_cnn", "--data", str(demo_dir), "--out", str(out), "--epochs", "2",
            "--img-size", "32", "--batch-size", "16", "--workers", "0", "--devices", str(devices), "--lr", "1e-9",
            "--quiet", "--set", "accelerator=cpu"]
    if devices == 1:  # the reference run, in this process: it saves the seconds of a fresh Python and Lightning
        from typer.testing import CliRunner

        from affectkit.cli import app

        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output[-3000:]
    else:  # DDP launches its processes from the command as a user runs it
        done = subprocess.run([sys.executable, "-m", "affectkit.cli", *args], capture_output=True, text=True,
                              timeout=420, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return pd.read_csv(out / "CustomCNN_history.csv"), (out / "CustomCNN_metrics.json")


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(demo_dir, tmp_path):
    single, _ = _train(demo_dir, tmp_path / "one", 1)
    double, metrics = _train(demo_dir, tmp_path / "two", 2)
    assert len(double) == len(single) == 2
    assert metrics.is_file()  # rank 0 went on to evaluate
    assert len(list((tmp_path / "two" / "logs" / "CustomCNN" / "phase1").glob("events.out.tfevents.*"))) == 1  # rank 0's
    # With the weights held still (lr 1e-9) the synchronised validation loss of the two halves is the whole's;
    # only the BatchNorm statistics (other batches) and DistributedSampler's padding differ.
    assert abs(double["val_loss"].iloc[-1] - single["val_loss"].iloc[-1]) < 0.05
    assert abs(double["val_acc"].iloc[-1] - single["val_acc"].iloc[-1]) <= 0.2
