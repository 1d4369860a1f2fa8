"""predict: a PNG of test image i gets the class of test_predictions.csv row i; bad files are named."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fmnist_jax import input_pipeline
from fmnist_jax import predict
from fmnist_jax import train

pytestmark = pytest.mark.slow  # subprocesses, real data or Keras models: the full tier only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_dir):
  from configs import default
  config = default.get_config()
  config.update(model='mlp', data_dir=data_dir, train_split='train[:3000]',
                validation_split='train[59000:]', num_epochs=1, progress_bar='off')
  workdir = str(tmp_path_factory.mktemp('predict'))
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'test_predictions.csv')) as f:
    rows = {int(r['index']): r for r in csv.DictReader(f)}
  return workdir, rows


def test_png_of_a_test_image_gets_the_csv_class(trained, builder, tmp_path):
  workdir, rows = trained
  test = input_pipeline.load_split(builder, 'test[:40]')
  files = []
  for image, index in zip(test['image'], test['index']):
    path = tmp_path / f'test_{index}.png'
    Image.fromarray(image[:, :, 0]).save(path)
    files.append((int(index), str(path)))
  entries = predict.predict_files(workdir, [f for _, f in files])
  for (index, _), entry in zip(files, entries):
    assert entry['class_index'] == int(rows[index]['predicted'])
    assert entry['confidence'] == pytest.approx(float(rows[index]['confidence']), abs=1e-5)
    assert [t['class_index'] for t in entry['top3']][0] == entry['class_index']


def test_light_background_photo_is_inverted(builder, tmp_path):
  image = input_pipeline.load_split(builder, 'test[:1]')['image'][0, :, :, 0]
  Image.fromarray(255 - image).save(tmp_path / 'light.png')
  np.testing.assert_array_equal(predict.load_image(str(tmp_path / 'light.png'))[:, :, 0], image)
  never = predict.load_image(str(tmp_path / 'light.png'), invert='never')[:, :, 0]
  np.testing.assert_array_equal(never, 255 - image)


def test_cli_jpeg_of_other_size_and_a_broken_file(trained, builder, tmp_path):
  workdir, _ = trained
  image = input_pipeline.load_split(builder, 'test[:1]')['image'][0, :, :, 0]
  Image.fromarray(255 - image).resize((120, 90)).convert('RGB').save(tmp_path / 'photo.jpg')
  (tmp_path / 'notes.png').write_text('this is text, not an image')
  Image.new('1', (20000, 20000)).save(tmp_path / 'huge.png')  # 400 M pixels: Pillow refuses it
  cmd = [sys.executable, '-m', 'fmnist_jax.predict', f'--workdir={workdir}', '--json',
         str(tmp_path / 'photo.jpg'), str(tmp_path / 'notes.png'), str(tmp_path / 'huge.png')]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  entries = json.loads(out.stdout)
  assert entries[0]['file'].endswith('photo.jpg') and entries[0]['class'] in (
      input_pipeline.CLASS_NAMES)
  assert len(entries[0]['top3']) == 3 and 0 < entries[0]['confidence'] <= 1
  assert entries[1]['file'].endswith('notes.png') and 'notes.png' in entries[1]['error']
  assert 'class' not in entries[1]
  assert 'huge.png' in entries[2]['error'] and 'exceeds limit' in entries[2]['error']
  assert 'Traceback' not in out.stderr
