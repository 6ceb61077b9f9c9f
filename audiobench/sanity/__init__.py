"""Sanity checks of explanation methods, run after a suite's cells (``sanity:`` in a suite).

* :mod:`~audiobench.sanity.randomisation`: cascading model randomisation (Adebayo et al. 2018),
  SSIM and Spearman between the maps of the trained and the progressively randomised classifier;
* :mod:`~audiobench.sanity.roar`: RemOve And Retrain (Hooker et al. 2019) with a random baseline;
* :mod:`~audiobench.sanity.plots`: per-clip map figures, randomisation and ROAR curves;
* :mod:`~audiobench.sanity.stage`: the stage the runner calls, resumable, results under ``RUN_DIR/sanity``.
"""
