"""Make torchaudio importable on CPU-only machines (applied by ``make`` only when the import fails).

The torchaudio 2.11 wheel is built against CUDA; where ``libc10_cuda.so`` is missing its compiled
extension cannot load. Removing ``torchaudio/lib/*.so`` leaves the pure-Python transforms
(Spectrogram, MelScale, melscale_fbanks, Resample, InverseSpectrogram) working.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def _imports() -> bool:
    return subprocess.run([sys.executable, "-c", "import torchaudio.functional"], capture_output=True).returncode == 0


def main() -> int:
    if _imports():
        print("torchaudio imports: nothing to fix")
        return 0
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        print("torchaudio is not installed", file=sys.stderr)
        return 1
    lib = Path(spec.origin).parent / "lib"
    removed = [p for p in lib.glob("*.so")]
    for p in removed:
        p.unlink()
    ok = _imports()
    print(f"torchaudio: removed {len(removed)} CUDA-built libraries; import {'works' if ok else 'still fails'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
