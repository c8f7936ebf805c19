"""Fuzz suite over hostile presets, model cards, audio files and engine controls.
``python -m tests.fuzz --seconds 120`` prints one summary line of counts; see core.py."""
