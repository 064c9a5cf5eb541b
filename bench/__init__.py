"""Speed and memory benchmarks of the engine, run as `python -m bench.<name>`."""
