"""The experiments built on the library: they produce what ``data/`` ships and the benchmarks print.

* :mod:`.sweep`: the rate–accuracy study (β grid, stage-1 ablation, every baseline) → ``data/results_mini.json``;
* :mod:`.task_study`: detection and segmentation on the shared bitstream → ``data/results_tasks_mini.json``;
* :mod:`.photos`: the same study on real photographs, the whole of Imagenette → ``data/results_imagenette.json``;
* :mod:`.bench`: every ``minist bench`` table; :mod:`.figures`: the README's figures; :mod:`.notebooks`: runs the
  tutorial headless.

The library (``minist`` outside this folder) imports nothing from here.
"""
