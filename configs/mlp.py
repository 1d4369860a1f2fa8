"""MLP 784-256-128-10 with dropout 0.2 (the PyTorch ANN report): Adam, cosine decay, 40 epochs."""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'mlp'
  config.num_epochs = 40
  return config
