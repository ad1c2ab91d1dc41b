"""Reading and writing the project's tables and checkpoints."""
