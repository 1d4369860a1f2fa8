"""fmnist_jax: MLP, CNN and BN-CNN on Fashion-MNIST with JAX, Flax, Optax, tfds, Orbax and CLU."""
from setuptools import find_packages, setup

_TENSORFLOW = ['tensorflow-cpu>=2.16; platform_system == "Linux"',
               'tensorflow>=2.16; platform_system != "Linux"']

setup(
    name='fmnist_jax',
    version='0.1.0',
    description='Fashion-MNIST classification in JAX/Flax: train, compare and reproduce reports.',
    packages=find_packages(include=['fmnist_jax', 'fmnist_jax.*']),
    python_requires='>=3.11',
    # Ranges are the ones tested (Python 3.11: jax 0.10.2, flax 0.12.8, orbax 0.12.8, tfds 4.9.10).
    install_requires=[
        'absl-py>=2.0',
        'clu>=0.0.12',
        'flax>=0.10.4,<0.13',
        'importlib_resources>=6.0',  # tfds needs it at prepare time and does not declare it.
        'keras>=3.0',  # reads Keras' MobileNetV2 weight files (fmnist_jax/pretrained.py).
        'jax>=0.5.0,<0.11',
        'matplotlib>=3.7',  # report figures.
        'ml-collections>=1.0',
        'numpy>=1.26',
        'optax>=0.2.4,<0.3',
        'pillow>=10',  # reading image files in predict.
        # Runs side by side as tasks, locally or on a cluster; ASHA for sweeps (experiments/).
        'ray[tune]>=2.60,<3',
        'orbax-checkpoint>=0.11.10,<0.13',  # preservation policies (latest N + best).
        'scikit-learn>=1.3',  # classification report and confusion matrix.
        'scipy>=1.11',  # t-intervals and Welch's t-test across seeds (experiments/).
        'tensorboard>=2.16',  # TensorBoard events (fmnist_jax/writers.py), with or without TF.
        # Split strings, key hashing and registered checksums; the archives are read with numpy in
        # tfds' order (config.data_source='archives', the default), so TensorFlow is optional.
        'tensorflow-datasets>=4.9.7,<5',
        'tqdm>=4.60',
    ],
    extras_require={
        # tfds' prepared copy (data_source='tfds'); the tests compare both sources, so they need it.
        'tensorflow': _TENSORFLOW,
        'test': ['pytest>=8', 'h5py>=3.10', *_TENSORFLOW],  # h5py: Keras' legacy weight layout.
        # Only for `python -m fmnist_jax.benchmark --compare` (Keras 3 comes with TensorFlow).
        # On a CPU-only machine install the CPU build first, e.g. `pip install torch==2.13.0`.
        'compare': ['torch>=2.3'],
    },
)
