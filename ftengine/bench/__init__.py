"""Every benchmark suite of ftengine, on the top floor beside the CLI.

- ``optimizer`` / ``optimizer_report``: the fused FlatOptimizer step vs torch.optim.AdamW (llm.c-style workbench).
- ``cache`` / ``cache_report`` (with ``cache_data``, ``gather``): epoch time uncached vs cached.
- ``e2e`` / ``e2e_report`` (with ``e2e_recipes``, ``e2e_baselines``): whole runs vs a plain loop and HF Trainer.
- ``kit``: the environment record, progress bar, spreads and chart helpers every suite shares.
- ``options``: the suites' command-line options (torch-free); ``suites``: run one by name and write its files.
- ``random_init``: a model directory's config and tokenizer with fresh weights (suites on machines without weights).
- ``gpu`` (with ``gpu_profile``, ``gpu_summary``): the Python steps of bench/gpu_check.sh, the one-command GPU check.

This package may import anything in the engine; nothing in the engine imports it.
"""
