"""eventlens: explore, submit and replay LangWatch custom events."""

__version__ = "0.1.0"
