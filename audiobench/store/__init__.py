"""The run directory and the other stores on disk: the run directory's layout and cells
(:mod:`.run_dir`), its typed manifest (:mod:`.manifest`), kept masks (:mod:`.masks`), status markers
(:mod:`.status`), locks (:mod:`.lock`), file names (:mod:`.ids`), and the shipped artefacts
(:mod:`.shipped`)."""
