"""The method's text, as pure data and functions (no config, no I/O): questions, the three-stage format, modes."""
