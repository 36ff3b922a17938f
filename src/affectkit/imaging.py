"""The photo formats phones write, for Pillow: HEIC/HEIF (iPhones') through pi-heif, libheif with its HEVC decoder and
no encoder. Pillow reads AVIF itself; OpenCV, which builds the training cache, reads AVIF but not HEIC."""

from __future__ import annotations

from functools import cache

HEIF_SUFFIXES = (".heic", ".heif")


@cache
def register_photo_decoders() -> None:
    """Let Pillow open HEIC/HEIF files (once per process: Pillow's registry of decoders is global)."""
    import pi_heif

    pi_heif.register_heif_opener()
