"""Import torchaudio's pure-Python transforms, with a clear message when its CUDA-built extension breaks it.

On CPU-only machines the torchaudio 2.11 wheel ships CUDA-linked libraries that fail to load;
``python -m audiobench.install_fix`` (run by ``make``) removes them so the pure-Python parts import.
"""

from __future__ import annotations

from audiobench.kernel.errors import AudiobenchError

try:
    import torchaudio  # noqa: F401
    import torchaudio.functional as AF  # noqa: N812
except OSError as exc:  # pragma: no cover - depends on the install
    raise AudiobenchError(
        f"torchaudio failed to import ({exc}); run `python -m audiobench.install_fix` "
        "(make does this) to disable its CUDA-only extension"
    ) from exc

__all__ = ["AF"]
