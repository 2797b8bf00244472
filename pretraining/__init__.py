"""VLA pretraining: lerobot policies (``dlr_openvla``, ``dlr_pi0``, ``dlr_smolvla``) and one
Accelerate SFT loop. Entry points: ``pretraining.train.train(PretrainConfig(...))`` and
``pretraining.factory.load_policy(path)``."""
