"""Pricing: the price list and exact Decimal cost arithmetic (see catalogue.py, prices.json)."""
from tollgate.pricing.catalogue import (STANDARD, Catalogue, LongContextRates, ModelPrice, Rates, ServerToolPrice,
                                       TierRates)

__all__ = ["STANDARD", "Catalogue", "LongContextRates", "ModelPrice", "Rates", "ServerToolPrice", "TierRates"]
