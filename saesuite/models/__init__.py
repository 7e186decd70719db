"""Vision backbones (open_clip towers) and their named hook points."""
