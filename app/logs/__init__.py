"""train.py's output: step lines, the summary block, crash tails; indexing and tailing huge logs."""
