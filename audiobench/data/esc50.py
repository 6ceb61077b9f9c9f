"""ESC-50 and UrbanSound8K in their official layouts, split by their predefined folds.

ESC-50 (2000 clips of 5 s, 50 classes, 5 folds)::

    ROOT/meta/esc50.csv     filename, fold, target, category, esc10, src_file, take
    ROOT/audio/<filename>   44.1 kHz mono WAV

UrbanSound8K (8732 clips of at most 4 s, 10 classes, 10 folds)::

    ROOT/metadata/UrbanSound8K.csv   slice_file_name, fsID, start, end, salience, fold, classID, class
    ROOT/audio/fold<k>/<slice_file_name>

Class indices are the datasets' own targets (``target`` / ``classID``) renumbered in increasing
order over the whole CSV, so a subset (``esc10``) keeps a contiguous 0..K-1 range and the class
list does not depend on which folds are loaded. Clip ids are file names without extension.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from audiobench.contracts.registry import DATASETS
from audiobench.data.audio import Item
from audiobench.data.files import LINE, FileDataset, FileParams, Index, fold_params, read_csv
from audiobench.data.folds import require_folds
from audiobench.kernel.errors import AudiobenchError

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


class _FoldDataset(FileDataset):
    """Shared by ESC-50 and UrbanSound8K: a metadata CSV, audio files, predefined folds."""

    csv_rel: str = ""
    audio_rel: str = "audio"
    columns: tuple[str, ...] = ()
    label_col, name_col, file_col = "", "", ""
    n_folds = 0

    def csv_path(self) -> Path:
        return Path(self.params.root) / self.csv_rel

    def audio_path(self, row: dict[str, str]) -> Path:
        raise NotImplementedError

    def keep(self, row: dict[str, str]) -> bool:
        return True

    def problems(self) -> list[str]:
        root = Path(self.params.root)
        if not root.is_dir():
            return [self.missing("root", root, f" (it should hold {self.csv_rel} and {self.audio_rel}/)")]
        out = []
        for rel in (self.csv_rel, self.audio_rel):
            if not (root / rel).exists():
                out.append(self.missing("root", root / rel))
        return out

    def listing(self) -> str:
        return f"dataset.root: {self.csv_path()}"

    def rows(self) -> list[dict[str, str]]:
        return read_csv(self.csv_path(), self.columns, "root")

    def build_index(self) -> Index:
        rows = self.rows()
        try:
            targets = {int(r[self.label_col]): r[self.name_col] for r in rows}
            for r in rows:
                r["_fold"] = int(r["fold"])  # type: ignore[assignment]
        except ValueError as exc:
            raise AudiobenchError(f"dataset.root: {self.csv_path()}: a fold or class column is not an integer ({exc})") from None
        rows = [r for r in rows if self.keep(r)]
        kept_targets = sorted({int(r[self.label_col]) for r in rows})
        renumber = {t: i for i, t in enumerate(kept_targets)}
        split_of = self.params.split_of()
        require_folds(split_of, {r["_fold"] for r in rows}, str(self.csv_path()))
        items = [
            Item(
                path=self.audio_path(r),
                label=renumber[int(r[self.label_col])],
                sample_id=Path(r[self.file_col]).stem,
                split=split_of.get(r["_fold"], ""),  # type: ignore[arg-type]
                fold=r["_fold"],  # type: ignore[arg-type]
                origin=f"line {r[LINE]}",
            )
            for r in rows
        ]
        return Index(items, [targets[t] for t in kept_targets])


@DATASETS.register("esc50")
class ESC50(_FoldDataset):
    """ESC-50: 2000 environmental recordings of 5 s, 50 classes, 5 folds (official layout on disk)."""

    display_name, title = "ESC-50", "ESC-50"
    url = "https://github.com/karolpiczak/ESC-50"
    citation = (
        "K. J. Piczak, \"ESC: Dataset for Environmental Sound Classification\", "
        "Proc. 23rd ACM International Conference on Multimedia, 2015, doi:10.1145/2733373.2806390"
    )
    licence = "clips from freesound.org under CC BY-NC 3.0 (ESC-10 subset: CC BY 3.0); see the repository's LICENSE"
    csv_rel, audio_rel, columns = "meta/esc50.csv", "audio", ESC50_COLUMNS
    label_col, name_col, file_col = "target", "category", "filename"

    class Params(FileParams, fold_params(train=(1, 2, 3), valid=(4,), test=(5,))):  # the L-MAC paper's folds
        esc10: bool = Field(False, description="only the 10 classes of the ESC-10 subset")
        seconds: float = Field(5.0, gt=0, le=600)

    params: Params

    def audio_path(self, row: dict[str, str]) -> Path:
        return Path(self.params.root) / "audio" / row["filename"]

    def keep(self, row: dict[str, str]) -> bool:
        return not self.params.esc10 or row["esc10"].strip().lower() in ("true", "1")


@DATASETS.register("urbansound8k")
class UrbanSound8K(_FoldDataset):
    """UrbanSound8K: 8732 urban sound excerpts of at most 4 s, 10 classes, 10 folds (official layout)."""

    display_name, title = "UrbanSound8K", "UrbanSound8K"
    url = "https://urbansounddataset.weebly.com/urbansound8k.html"
    citation = (
        "J. Salamon, C. Jacoby, J. P. Bello, \"A Dataset and Taxonomy for Urban Sound Research\", "
        "Proc. 22nd ACM International Conference on Multimedia, 2014, doi:10.1145/2647868.2655045"
    )
    licence = "CC BY-NC 3.0 (excerpts of freesound.org recordings)"
    csv_rel, audio_rel, columns = "metadata/UrbanSound8K.csv", "audio", US8K_COLUMNS
    label_col, name_col, file_col = "classID", "class", "slice_file_name"

    class Params(FileParams, fold_params(train=(1, 2, 3, 4, 5, 6, 7, 8), valid=(9,), test=(10,))):
        seconds: float = Field(4.0, gt=0, le=600)

    params: Params

    def audio_path(self, row: dict[str, str]) -> Path:
        return Path(self.params.root) / "audio" / f"fold{int(row['fold'])}" / row["slice_file_name"]
