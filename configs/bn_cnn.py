"""Enhanced BN-CNN of the Keras 89.29 % report: Adam, cosine decay, flips and shifts, 50 epochs."""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'bn_cnn'
  config.num_epochs = 50
  config.augment.flip = True
  config.augment.shift = 0.05
  return config
