"""The run's listening test as a webMUSHRA experiment (for labs that run webMUSHRA's own server).

webMUSHRA (Schoeffler et al., 2018; the tool both seed papers used) reads a YAML file of pages; a
``mushra`` page has a ``reference`` and named ``stimuli`` (it adds the hidden reference itself and
shuffles the conditions). :func:`export_webmushra` writes the same trials as ``audiobench listen``
(stimuli named by method row, the random control as ``anchor``) and copies their WAVs beside it.
Page text is HTML in webMUSHRA, so class names and prompts are escaped.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import yaml

from audiobench.listen.trials import INSTRUCTIONS, REFERENCE, load_trials


def export_webmushra(run_dir: str | Path, folder: str | Path, methods: list[str] | None = None,
                     per_page: int | None = None) -> Path:
    """Write ``folder/<run>.yaml`` (webMUSHRA config) and ``folder/audio/`` (the trials' WAVs); returns the YAML path.

    Audio paths in the file are ``configs/<folder name>/audio/...``: copy ``folder`` into webMUSHRA's ``configs/``
    and open ``?config=<folder name>/<run>.yaml``. Raises :class:`audiobench.kernel.errors.AudiobenchError` when the run
    has nothing to listen to. ``methods`` and ``per_page``: as :func:`~audiobench.listen.trials.select_stimuli`.
    """
    from audiobench.store.records import read_manifest

    run, out = Path(run_dir), Path(folder)
    trials = load_trials(run, methods, per_page)
    name = read_manifest(run).suite.name or run.name
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    base = f"configs/{out.name}/audio"
    steps = "".join(f"<li>{html.escape(i)}</li>" for i in INSTRUCTIONS)
    pages: list[dict] = [{
        "type": "generic", "id": "instructions", "name": "Instructions",
        "content": f"<p>Each page plays an input recording (reference), the class the classifier predicted and "
                   f"interpretations of it. Rate each from 0 to 100:</p><ol>{steps}</ol>",
    }]
    for t in trials:
        files = {}
        for stimulus, rel in t.stimuli.items():
            target = audio / f"{t.id}_{len(files)}.wav"
            shutil.copyfile(run / rel, target)
            files[stimulus] = f"{base}/{target.name}"
        pages.append({
            "type": "mushra", "id": t.id, "name": f"Predicted class: {html.escape(t.predicted)}",
            "content": f"<p>Predicted class: <b>{html.escape(t.predicted)}</b></p><ol>{steps}</ol>", "showWaveform": False, "enableLooping": True,
            "reference": files.pop(REFERENCE), "createAnchor35": False, "createAnchor70": False,
            "stimuli": files,
        })
    pages.append({"type": "finish", "name": "Thank you", "content": "Thank you for listening.",
                  "showResults": False, "writeResults": True})
    config = {"testname": f"audiobench listening test: {name}", "testId": f"audiobench_{out.name}",
              "bufferSize": 2048, "stopOnErrors": True, "showButtonPreviousPage": True,
              "remoteService": "service/write.php", "pages": pages}
    path = out / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
