"""ftengine: declarative, fast fine-tuning of pretrained backbones."""

__version__ = "0.1.0"
