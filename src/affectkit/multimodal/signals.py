"""Audio and physiological signals -> a fixed set of named features per sample window.

Audio: the prosodic and spectral descriptors affective speech research summarises a clip with (pitch level and
range, loudness, voicing, spectral shape, MFCCs), computed with librosa. Physiological signals: per channel its level,
spread, range and trend over the window, and, for the channel kinds neurokit2 knows, what they mean: skin-conductance
responses for EDA, heart rate and its variability for ECG and PPG, breathing rate for respiration. A feature the
window is too short or too flat to give (a heart-rate variability from two beats) is NaN, and the fusion imputes it.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.data.records import Reject

AUDIO_RATE = 16_000
MIN_AUDIO_SECONDS = 0.25
N_MFCC = 13
PITCH_RANGE_HZ = (60.0, 500.0)  # adult and child voices
MIN_PHYSIO_SAMPLES = 4
TIME_COLUMNS = ("time", "timestamp", "t")
# Channel name prefixes -> the kind of signal neurokit2 processes.
CHANNEL_KINDS = {"eda": "eda", "gsr": "eda", "scl": "eda", "ecg": "ecg", "ekg": "ecg", "ppg": "ppg", "bvp": "ppg",
                 "rsp": "rsp", "resp": "rsp"}


# -- audio --------------------------------------------------------------------------------------------------------


def read_audio(path: Path, start: float | None, end: float | None) -> np.ndarray:
    """The window's samples, mono, at :data:`AUDIO_RATE`."""
    import soundfile

    try:
        info = soundfile.info(str(path))
        first = int(round((start or 0.0) * info.samplerate))
        last = info.frames if end is None else min(info.frames, int(round(end * info.samplerate)))
        if first >= info.frames:
            raise Reject("window_outside", f"audio {path.name} lasts {info.duration:.2f} s; the window starts at "
                                           f"{start:g} s")
        samples, rate = soundfile.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        raise Reject("audio_unreadable", f"audio {path.name} cannot be read ({exc})") from None
    mono = samples.mean(axis=1)
    if len(mono) < MIN_AUDIO_SECONDS * rate:
        raise Reject("audio_too_short", f"audio {path.name}: the window holds {len(mono) / rate:.2f} s of sound, "
                                        f"less than {MIN_AUDIO_SECONDS} s")
    if rate != AUDIO_RATE:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=AUDIO_RATE)
    return mono


def _stats(prefix: str, values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {f"{prefix}_mean": math.nan, f"{prefix}_std": math.nan}
    return {f"{prefix}_mean": float(np.mean(values)), f"{prefix}_std": float(np.std(values))}


def audio_features(samples: np.ndarray) -> dict[str, float]:
    import librosa

    rms = librosa.feature.rms(y=samples)[0]
    loudness = librosa.amplitude_to_db(rms, ref=1.0)
    voiced = rms > max(1e-4, 0.25 * np.median(rms[rms > 0])) if np.any(rms > 0) else np.zeros_like(rms, dtype=bool)
    pitch = librosa.yin(samples, fmin=PITCH_RANGE_HZ[0], fmax=PITCH_RANGE_HZ[1], sr=AUDIO_RATE)
    frames = min(len(pitch), len(voiced))
    semitones = 12 * np.log2(pitch[:frames][voiced[:frames]] / 100.0)  # relative to 100 Hz; level and range
    features = {
        **_stats("audio_loudness_db", loudness),
        "audio_loudness_range_db": float(np.ptp(loudness)),
        "audio_voiced_fraction": float(voiced.mean()),
        **_stats("audio_pitch_semitones", semitones),
        "audio_pitch_range_semitones": float(np.ptp(semitones)) if semitones.size else math.nan,
        **_stats("audio_zero_crossing_rate", librosa.feature.zero_crossing_rate(samples)[0]),
        **_stats("audio_spectral_centroid_hz", librosa.feature.spectral_centroid(y=samples, sr=AUDIO_RATE)[0]),
        **_stats("audio_spectral_flatness", librosa.feature.spectral_flatness(y=samples)[0]),
        **_stats("audio_spectral_rolloff_hz", librosa.feature.spectral_rolloff(y=samples, sr=AUDIO_RATE)[0]),
    }
    mfcc = librosa.feature.mfcc(y=samples, sr=AUDIO_RATE, n_mfcc=N_MFCC)
    for k, row in enumerate(mfcc, start=1):
        features.update(_stats(f"audio_mfcc{k}", row))
    return features


# -- physiological signals ----------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _read_recording(path: Path, modified: float) -> tuple[pd.DataFrame, float]:
    """A physio CSV as numbers with its sampling rate; cached, as many windows of one session read one file."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise Reject("physio_unreadable", f"physio file {path.name} is not a readable CSV ({exc})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    time_column = next((c for c in TIME_COLUMNS if c in table.columns), None)
    if time_column is None:
        raise Reject("physio_no_time", f"physio file {path.name} has no time column (one of {', '.join(TIME_COLUMNS)}, "
                                       "in seconds)")
    channels = [c for c in table.columns if c != time_column]
    if not channels:
        raise Reject("physio_no_channel", f"physio file {path.name} has a time column and no signal")
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = [c for c in table.columns if numbers[c].isna().any()]
    if bad:
        raise Reject("physio_not_numeric", f"physio file {path.name}: column {bad[0]} has empty or non-numeric values")
    time = numbers[time_column].to_numpy()
    steps = np.diff(time)
    if len(time) < MIN_PHYSIO_SAMPLES or np.any(steps <= 0):
        raise Reject("physio_time_invalid", f"physio file {path.name}: the time column must increase strictly over at "
                                            f"least {MIN_PHYSIO_SAMPLES} rows")
    return numbers.rename(columns={time_column: "time"}), float(1.0 / np.median(steps))


def channel_kind(name: str) -> str | None:
    return next((kind for prefix, kind in CHANNEL_KINDS.items() if name.startswith(prefix)), None)


def read_physio(path: Path, start: float | None, end: float | None) -> tuple[pd.DataFrame, float]:
    """The window's rows of a physio CSV (channels only) and the sampling rate in Hz."""
    table, rate = _read_recording(path, path.stat().st_mtime)
    time = table["time"].to_numpy()
    inside = (time >= (start if start is not None else -np.inf)) & (time < (end if end is not None else np.inf))
    if inside.sum() < MIN_PHYSIO_SAMPLES:
        raise Reject("window_outside", f"physio file {path.name} covers {time[0]:g}-{time[-1]:g} s; the window "
                                       f"{start or 0:g}-{'end' if end is None else f'{end:g}'} s holds "
                                       f"{int(inside.sum())} samples")
    return table.loc[inside].drop(columns="time").reset_index(drop=True), rate


def _neurokit_features(name: str, kind: str, signal: np.ndarray, rate: float) -> dict[str, float]:
    """What neurokit2 reads in one channel; NaN where the window is too short or flat for it."""
    import neurokit2 as nk

    out: dict[str, float] = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            if kind == "eda":
                processed, _ = nk.eda_process(signal, sampling_rate=rate)
                minutes = len(signal) / rate / 60
                peaks = processed["SCR_Peaks"].to_numpy().astype(bool)
                out[f"physio_{name}_scr_per_min"] = float(peaks.sum() / minutes)
                out[f"physio_{name}_scr_amplitude"] = float(processed["SCR_Amplitude"][peaks].mean()) if peaks.any() \
                    else 0.0
                out[f"physio_{name}_tonic_mean"] = float(processed["EDA_Tonic"].mean())
            elif kind in ("ecg", "ppg"):
                process = nk.ecg_process if kind == "ecg" else nk.ppg_process
                processed, info = process(signal, sampling_rate=rate)
                rate_column = "ECG_Rate" if kind == "ecg" else "PPG_Rate"
                out[f"physio_{name}_heart_rate_mean"] = float(processed[rate_column].mean())
                out[f"physio_{name}_heart_rate_std"] = float(processed[rate_column].std())
                hrv = nk.hrv_time(info, sampling_rate=rate)
                out[f"physio_{name}_rmssd_ms"] = float(hrv["HRV_RMSSD"].iloc[0])
            elif kind == "rsp":
                processed, _ = nk.rsp_process(signal, sampling_rate=rate)
                out[f"physio_{name}_breaths_per_min"] = float(processed["RSP_Rate"].mean())
        except Exception:  # noqa: BLE001  (neurokit2 raises many kinds on windows it cannot read; the value is NaN)
            pass
    return {key: value if math.isfinite(value) else math.nan for key, value in out.items()}


NEUROKIT_FEATURES = {"eda": ("scr_per_min", "scr_amplitude", "tonic_mean"),
                     "ecg": ("heart_rate_mean", "heart_rate_std", "rmssd_ms"),
                     "ppg": ("heart_rate_mean", "heart_rate_std", "rmssd_ms"),
                     "rsp": ("breaths_per_min",)}


def channel_feature_names(name: str) -> list[str]:
    generic = [f"physio_{name}_{stat}" for stat in ("mean", "std", "min", "max", "slope_per_s", "mean_abs_diff")]
    kind = channel_kind(name)
    return generic + [f"physio_{name}_{stat}" for stat in NEUROKIT_FEATURES.get(kind, ())]


def physio_features(window: pd.DataFrame, rate: float) -> dict[str, float]:
    features: dict[str, float] = {}
    seconds = np.arange(len(window)) / rate
    for name in window.columns:
        signal = window[name].to_numpy(dtype=np.float64)
        features.update({
            f"physio_{name}_mean": float(signal.mean()),
            f"physio_{name}_std": float(signal.std()),
            f"physio_{name}_min": float(signal.min()),
            f"physio_{name}_max": float(signal.max()),
            f"physio_{name}_slope_per_s": float(np.polyfit(seconds, signal, 1)[0]),
            f"physio_{name}_mean_abs_diff": float(np.abs(np.diff(signal)).mean()),
        })
        kind = channel_kind(name)
        if kind:
            computed = _neurokit_features(name, kind, signal, rate)
            features.update({key: computed.get(key, math.nan) for key in channel_feature_names(name)[6:]})
    return features
