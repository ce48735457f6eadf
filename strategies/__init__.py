"""Built-in activation-strategy plugins: each module registers one strategy with
``ntbench.strategies.STRATEGIES``. Drop a new file here (or ship one through the
``ntbench.strategies`` entry-point group) to add a strategy."""
