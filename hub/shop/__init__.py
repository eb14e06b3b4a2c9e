"""The business side: costs and quotes, filament stock, orders and reports."""

from .component import Shop

__all__ = ["Shop"]
