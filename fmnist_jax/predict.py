"""Classify image files with a trained run: `python -m fmnist_jax.predict --workdir W FILE...`.

Any size and common format (PNG, JPEG, ...): converted to grayscale, padded to a square with its
background, resized to 28x28, and inverted when the background is light, since Fashion-MNIST shows
light garments on a black background. A file that cannot be read gets an error entry; the others are
still classified and the exit code is 1.
"""
import json
import sys

from absl import flags
import jax
import numpy as np
from PIL import Image
from PIL import ImageOps

from fmnist_jax import build
from fmnist_jax import cli
from fmnist_jax import errors
from fmnist_jax import input_pipeline

flags.DEFINE_string('workdir', None, 'A training workdir; its best checkpoint is used.')
flags.DEFINE_enum('invert', 'auto', ['auto', 'always', 'never'],
                  'Invert the grey levels: auto inverts images whose border is light.')
flags.DEFINE_bool('json', False, 'Print a JSON list instead of one line per file.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def load_image(path: str, invert: str = 'auto') -> np.ndarray:
  """Returns a uint8 (28, 28, 1) image shaped like Fashion-MNIST; raises OSError if unreadable."""
  with Image.open(path) as im:
    im = ImageOps.exif_transpose(im).convert('L')
  pixels = np.asarray(im)
  border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
  background = int(np.median(border))
  if invert == 'always' or (invert == 'auto' and background > 127):
    im, background = ImageOps.invert(im), 255 - background
  if im.size != (28, 28):
    side = max(im.size)
    square = Image.new('L', (side, side), background)
    square.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    im = square.resize((28, 28), Image.Resampling.LANCZOS)
  return np.asarray(im, np.uint8)[:, :, None]


def predict_files(workdir: str, files: list[str], invert: str = 'auto') -> list[dict]:
  """One entry per file, in order: the class and top 3, or an error naming the reason."""
  config, model, variables, _, _ = build.load_best(workdir)
  entries, images = [], []
  for path in files:
    try:
      images.append(load_image(path, invert))
      entries.append({'file': path})
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      # PIL raises UnidentifiedImageError (an OSError) for what it cannot read, and
      # DecompressionBombError for an image of more than twice Image.MAX_IMAGE_PIXELS.
      entries.append({'file': path, 'error': f'cannot read {path}: {e}'})
  if images:
    logits = model.apply(variables, input_pipeline.normalize(np.stack(images)), train=False)
    probs = np.asarray(jax.nn.softmax(logits))
    good = iter(probs)
    for entry in entries:
      if 'error' in entry:
        continue
      p = next(good)
      top = np.argsort(-p, kind='stable')[:3]
      entry.update({'class': input_pipeline.CLASS_NAMES[top[0]], 'class_index': int(top[0]),
                    'confidence': float(p[top[0]]),
                    'top3': [{'class': input_pipeline.CLASS_NAMES[i], 'class_index': int(i),
                              'confidence': float(p[i])} for i in top]})
  return entries


def main(argv):
  files = argv[1:]
  if not files:
    raise errors.UserError('no image files given; put one or more after the flags, e.g. '
                           '`python -m fmnist_jax.predict --workdir W shoe.png`.')
  entries = predict_files(FLAGS.workdir, files, FLAGS.invert)
  if FLAGS.json:
    print(json.dumps(entries, indent=2))
  else:
    for e in entries:
      if 'error' in e:
        print(f'{e["file"]}\tERROR\t{e["error"]}')
      else:
        print(f'{e["file"]}\t{e["class"]}\t{e["confidence"]:.4f}')
  if any('error' in e for e in entries):
    print(f'{sum("error" in e for e in entries)} of {len(entries)} files could not be read.',
          file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  cli.run(main, config_flag=None)
