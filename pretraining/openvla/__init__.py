from pretraining.openvla.configuration_openvla import DlrOpenVLAConfig

__all__ = ["DlrOpenVLAConfig"]
