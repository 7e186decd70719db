"""The activation cache: its format, the writer that fills it from a backbone, the reader and the verifier."""
