"""The photo formats phones write, for Pillow: HEIC/HEIF (iPhones') through pi-heif, libheif with its HEVC decoder and
no encoder. Pillow reads AVIF itself; OpenCV, which builds the training cache, reads AVIF but not HEIC."""

from __future__ import annotations

from functools import cache

HEIF_SUFFIXES = (".heic", ".heif")
HEIF_MISSING = "HEIC photos need pi-heif, which is not installed here (the set-up installs it)"


@cache
def register_photo_decoders() -> bool:
    """Let Pillow open HEIC/HEIF files (once per process: Pillow's registry of decoders is global); False where
    pi-heif is not installed (an environment set up by other means than the project's set-up)."""
    try:
        import pi_heif
    except ImportError:
        return False
    pi_heif.register_heif_opener()
    return True
