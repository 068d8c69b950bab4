"""flowhawk: run Kestra-dialect YAML flows on PostgreSQL, with pip install."""

__version__ = "0.1.0"
