"""Pricing: the price list and exact Decimal cost arithmetic (see catalogue.py, prices.json)."""
from tollgate.pricing.catalogue import Catalogue, LongContextRates, ModelPrice, Rates

__all__ = ["Catalogue", "LongContextRates", "ModelPrice", "Rates"]
