"""exvad-ray: explainable, fine-grained video anomaly detection (Ex-VAD) for video archives, on Ray."""

__version__ = "0.1.0"
