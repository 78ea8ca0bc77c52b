"""The diffusionad method: everything of it in one folder; its registry entry is spec.py."""
