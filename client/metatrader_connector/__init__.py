"""MetaTrader 5 connector: market data and trading through the MetaTrader5 API."""
