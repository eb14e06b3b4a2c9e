"""The business side: costs and quotes, filament stock, orders and reports."""

from .component import Shop
from .costing import Costs, Line, QuoteRequest
from .order_schemas import Order, OrderCreate, OrderItemIn
from .orders import Orders
from .reports import Period, Reports, period

__all__ = ["Costs", "Line", "Order", "OrderCreate", "OrderItemIn", "Orders", "Period", "QuoteRequest", "Reports",
           "Shop", "period"]
