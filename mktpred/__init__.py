"""mktpred: record Coinbase market data 24/7, convert it to Parquet, validate it, rebuild books."""

__version__ = "0.1.0"

__all__ = ["__version__"]
