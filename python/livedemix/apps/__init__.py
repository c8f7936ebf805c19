"""The applications built on the library: the command line, the live session and its terminal UI,
the demo, the benchmarks and the file jobs (separate, eval)."""
