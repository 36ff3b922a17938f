"""The names of the files affectkit writes into an output folder, in one place (DESIGN.md, "A run folder").

``model`` is a display name (``ResNet50``, ``MobileNetV2``, ``Ensemble``): what the spec's file names carry.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    root: Path

    # -- what a run shares: its settings, data and split --------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.root / "splits.csv"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine.csv"

    @property
    def dataset_analysis(self) -> Path:
        return self.root / "dataset_analysis.png"

    @property
    def dataset_summary(self) -> Path:
        return self.root / "dataset_summary.json"

    # -- per model ------------------------------------------------------------------------------------------------

    def best(self, model: str) -> Path:
        """The saved model's stem: ``best_<Model>`` + ``.safetensors`` (weights) and ``.json`` (description)."""
        return self.root / f"best_{model}"

    def weights(self, model: str) -> Path:
        return self.root / f"best_{model}.safetensors"

    def chosen_model(self) -> str | None:
        """The model the run's report chose on the validation faces (its comparison table's ``chosen`` row), where
        there is one."""
        if not self.comparison_table.is_file():
            return None
        with self.comparison_table.open(newline="") as table:
            return next((row["model"] for row in csv.DictReader(table) if row.get("chosen") == "True"), None)

    def history(self, model: str) -> Path:
        return self.root / f"{model}_history.csv"

    def training_plot(self, model: str) -> Path:
        return self.root / f"{model}_training_history.png"

    def metrics(self, model: str) -> Path:
        return self.root / f"{model}_metrics.json"

    def confusion_matrix(self, model: str) -> Path:
        return self.root / f"{model}_confusion_matrix.png"

    def reliability(self, model: str) -> Path:
        return self.root / f"{model}_reliability.png"

    def face_predictions(self, model: str) -> Path:
        """Every face the model scored: its truth and the model's answer, one row each."""
        return self.root / f"{model}_predictions.csv"

    def mistakes(self, model: str) -> Path:
        return self.root / f"{model}_mistakes.png"

    def coverage(self, model: str) -> Path:
        return self.root / f"{model}_coverage.png"

    def class_maps(self, model: str) -> Path:
        """Where the model looks: each class's mean face under its mean map (``affectkit explain``)."""
        return self.root / f"{model}_class_maps.png"

    def card(self, model: str) -> Path:
        return self.root / f"{model}_card.md"

    def checkpoints(self, model: str) -> Path:
        """Resumable training state of one model (the trainer's own files)."""
        return self.root / "checkpoints" / model

    @property
    def logs(self) -> Path:
        """TensorBoard logs, ``logs/<Model>/phase<N>/``."""
        return self.root / "logs"

    # -- the comparison of a run's models ---------------------------------------------------------------------

    @property
    def comparison_table(self) -> Path:
        return self.root / "model_comparison_results.csv"

    @property
    def comparison_plot(self) -> Path:
        return self.root / "model_comparison.png"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def random_start(self) -> RunFolder:
        """The random-start controls of the pretrained models, a run folder of their own."""
        return RunFolder(self.root / "random_start")

    # -- a benchmark folder ---------------------------------------------------------------------------------------

    @property
    def benchmark_table(self) -> Path:
        return self.root / "benchmark.csv"

    @property
    def benchmark_report(self) -> Path:
        return self.root / "benchmark.md"

    @property
    def benchmark_chart(self) -> Path:
        return self.root / "benchmark.png"

    @property
    def test_predictions(self) -> Path:
        """Each benchmark row's class for each test face, beside the face's own: paired tests of any two rows."""
        return self.root / "test_predictions.csv"

    @property
    def models(self) -> RunFolder:
        """The benchmark's trained models, a run folder of their own."""
        return RunFolder(self.root / "models")

    # -- a tuning study folder ------------------------------------------------------------------------------------

    @property
    def study(self) -> Path:
        return self.root / "study.db"

    def trial(self, number: int) -> RunFolder:
        return RunFolder(self.root / "trials" / str(number))

    @property
    def best_config(self) -> Path:
        return self.root / "best_config.yaml"

    @property
    def best_trial(self) -> Path:
        return self.root / "best_trial.json"

    @property
    def tuning_history(self) -> Path:
        return self.root / "tuning_history.png"


def model_splits(weights: Path) -> Path:
    """The ``splits.csv`` a saved model was trained on: beside it (``train``, ``run``), else at the top of the
    folder whose part it is (a benchmark's ``models/``, a run's ``random_start/``, a study's ``trials/<n>/``).
    Where there is none, the path beside the model, for the message that names it."""
    folder = weights.parent
    tops = [folder]
    if folder.name in ("models", "random_start"):  # RunFolder.models, RunFolder.random_start
        tops.append(folder.parent)
    if folder.parent.name == "trials":  # RunFolder.trial
        tops.append(folder.parent.parent)
    return next((RunFolder(top).splits for top in tops if RunFolder(top).splits.is_file()), RunFolder(folder).splits)
