"""Basic CNN of the Keras 89.29 % report: Adam, cosine decay, horizontal flips, 20 epochs."""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'cnn'
  config.num_epochs = 20
  config.schedule = 'cosine'
  config.augment.flip = True
  return config
