"""bv-pipeline: building-IoT time series from ACE FlightDeck into a hot (D1/SQLite) and cold (R2/Parquet) tier."""

__version__ = "0.1.0"
