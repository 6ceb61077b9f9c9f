"""The contracts components are built on: typed parameters (:mod:`.component`), the registries and
plugins (:mod:`.registry`), the front end (:mod:`.frontend`), what a method returns
(:mod:`.explanation`) and which class each clip is explained for (:mod:`.targets`). The abstract bases
of each kind live with their kind: ``audiobench.methods.base``, ``audiobench.models.base``,
``audiobench.metrics.base``, ``audiobench.data.base``."""
