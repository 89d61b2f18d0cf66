"""Faithful emulators of the five provider APIs, served on loopback (see ``sandbox/app.py``)."""
