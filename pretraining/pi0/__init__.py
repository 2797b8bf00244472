from pretraining.pi0.configuration_pi0 import DlrPi0Config

__all__ = ["DlrPi0Config"]
