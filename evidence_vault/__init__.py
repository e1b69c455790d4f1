"""evidence-vault: keep photos and videos as legal evidence."""

__version__ = "0.1.0"
