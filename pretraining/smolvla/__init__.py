from pretraining.smolvla.configuration_smolvla import DlrSmolVLAConfig

__all__ = ["DlrSmolVLAConfig"]
