"""How fast can configs/cnn.py train here at most? The sum of its matrix kernels alone.

    python -m experiments.studies.cnn_kernel_floor [--batch_size 128]

Times, in isolation and jitted, every convolution and dense product that one train step of the
`cnn` model must run (forward, input gradient where one is needed, weight gradient), as XLA runs
them on this backend, and also the first convolution written as nine shifted slices and a matrix
product (the faster of the two is counted). Their sum is a floor for the step time; a second floor
adds the element-wise work no step can skip (Adam's pass over the parameters, the two max-pools
forward and backward), each timed alone. The images/s each allows is a ceiling, printed beside the
benchmark's PyTorch and Keras figures for `cnn` (experiments/results/benchmark_cpu.json) as the
fraction of twice PyTorch's and of Keras' images/s it would reach (the speed targets, and what
this measured: docs/speed.md and docs/history.md).
"""
import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import optax

from fmnist_jax import files
from fmnist_jax import ops
from fmnist_jax import reporting


def _time(fn, *args, repeats=50):
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats


def conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def conv_as_matmul(x, w):
  h, v = x.shape[1] - 2, x.shape[2] - 2
  patches = jnp.concatenate([x[:, i:i + h, j:j + v] for i in range(3) for j in range(3)], -1)
  return patches @ w.reshape(-1, w.shape[-1])


def kernels(batch: int) -> dict[str, float]:
  """Seconds of each kernel of one cnn train step at this batch size."""
  key = jax.random.key(0)
  x1, w1 = jax.random.normal(key, (batch, 28, 28, 1)), jax.random.normal(key, (3, 3, 1, 32))
  x2, w2 = jax.random.normal(key, (batch, 13, 13, 32)), jax.random.normal(key, (3, 3, 32, 64))
  x3, w3 = jax.random.normal(key, (batch, 1600)), jax.random.normal(key, (1600, 128))
  out = {}
  for name, conv1 in (('xla', conv), ('matmul', conv_as_matmul)):
    out[f'conv1_forward_{name}'] = _time(conv1, x1, w1)
    out[f'conv1_weight_grad_{name}'] = _time(
        lambda x, w, c=conv1: jax.grad(lambda w: c(x, w).sum())(w), x1, w1)
  out['conv2_forward'] = _time(conv, x2, w2)
  out['conv2_input_grad'] = _time(lambda x, w: jax.grad(lambda x: conv(x, w).sum())(x), x2, w2)
  out['conv2_weight_grad'] = _time(lambda x, w: jax.grad(lambda w: conv(x, w).sum())(w), x2, w2)
  # Dense 1600 -> 128: forward, input and weight gradients (the 128 -> 10 layer is negligible).
  out['dense_forward_and_grads'] = _time(
      lambda x, w: jax.grad(lambda x, w: (x @ w).sum(), argnums=(0, 1))(x, w), x3, w3)
  return out


def glue(batch: int) -> dict[str, float]:
  """Seconds of the least element-wise work a cnn step cannot skip, each piece alone and jitted.

  Adam must read and write every parameter and its two moments; the first max-pool must read the
  first convolution's whole output and its gradient must write one of the same size; likewise the
  second. (Bias, ReLU, dropout, the loss and the batch gather are left out: smaller.)
  """
  key = jax.random.key(0)
  shapes = {'k1': (3, 3, 1, 32), 'b1': (32,), 'k2': (3, 3, 32, 64), 'b2': (64,),
            'd1': (1600, 128), 'c1': (128,), 'd2': (128, 10), 'c2': (10,)}
  params = {n: jax.random.normal(key, s) for n, s in shapes.items()}
  tx = optax.adam(1e-3)
  opt = tx.init(params)

  def adam(params, opt, grads):
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  def pool(x):
    y, vjp = jax.vjp(ops.max_pool_2x2, x)
    return vjp(y)[0]

  return {'adam_update': _time(adam, params, opt, params),
          'pool1_forward_and_grad': _time(pool, jax.random.normal(key, (batch, 26, 26, 32))),
          'pool2_forward_and_grad': _time(pool, jax.random.normal(key, (batch, 11, 11, 64)))}


def main(argv=None):
  p = argparse.ArgumentParser(prog=f'python -m {__spec__.name}',
                              description=__doc__.split('\n')[0])
  p.add_argument('--batch_size', type=int, default=128)
  p.add_argument('--benchmark', default='experiments/results/benchmark_cpu.json')
  p.add_argument('--output', default='experiments/results/cnn_kernel_floor.json')
  args = p.parse_args(argv)
  k = kernels(args.batch_size)
  floor = (min(k['conv1_forward_xla'], k['conv1_forward_matmul'])
           + min(k['conv1_weight_grad_xla'], k['conv1_weight_grad_matmul'])
           + k['conv2_forward'] + k['conv2_input_grad'] + k['conv2_weight_grad']
           + k['dense_forward_and_grads'])
  g = glue(args.batch_size)
  with_glue = floor + sum(g.values())
  result = {'machine': reporting.machine(), 'batch_size': args.batch_size,
            'kernel_ms': {n: s * 1e3 for n, s in k.items()}, 'floor_ms': floor * 1e3,
            'ceiling_images_per_second': args.batch_size / floor,
            'glue_ms': {n: s * 1e3 for n, s in g.items()}, 'floor_with_glue_ms': with_glue * 1e3,
            'ceiling_with_glue_images_per_second': args.batch_size / with_glue}
  for name, seconds in {**k, **g}.items():
    print(f'{name:28s} {seconds * 1e3:7.2f} ms')
  print(f'kernels (the faster conv1 of the two): {floor * 1e3:.2f} ms per step of '
        f'{args.batch_size} -> at most {args.batch_size / floor:,.0f} images/s')
  print(f'kernels + Adam + the two max-pools: {with_glue * 1e3:.2f} ms -> at most '
        f'{args.batch_size / with_glue:,.0f} images/s')
  if os.path.exists(args.benchmark):
    rows = {r['model']: r for r in json.load(open(args.benchmark))['rows']}
    if 'cnn' in rows and 'pytorch_images_per_second' in rows['cnn']:
      cnn = rows['cnn']
      targets = {'2x PyTorch': 2 * cnn['pytorch_images_per_second'],
                 '1x Keras': cnn['keras_images_per_second']}
      result['targets_images_per_second'] = targets
      for name, ips in targets.items():
        print(f'{name}: {ips:,.0f} images/s needed; the kernels alone allow '
              f'{args.batch_size / floor / ips:.2f} of it, with Adam and pooling '
              f'{args.batch_size / with_glue / ips:.2f}')
  files.write_json(args.output, result)
  return result


if __name__ == '__main__':
  main()
