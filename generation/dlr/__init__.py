"""DLR generator: Discover (VAE patterns), Learn (pattern-conditioned BC), Reinforce (PPO per
pattern), plus the O2O-RL and MI-bonus baselines, rollouts to matched datasets and diversity."""
