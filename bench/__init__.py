"""adaptbench: prompt engineering, RAG and LoRA measured side by side."""

__version__ = "0.1.0"
